"""``EXECUTOR=local``: the same deployment with Airflow's LocalExecutor (no broker, no workers: the
scheduler runs the tasks). Its own module, so that it starts after the Celery deployment of
test_deployment.py has stopped (they share the API port and the metadata database)."""

from __future__ import annotations

import socket

from deployment import Deployment


def test_the_local_executor_runs_a_stage_with_no_broker_and_no_worker(stand, tmp_path):
    with Deployment(
        home=tmp_path / "home", log_dir=tmp_path / "logs", port_base=stand.port_base, executor="local"
    ) as running:
        assert sorted(running.procs) == ["api-server", "dag-processor", "scheduler", "triggerer"]
        assert running.env()["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        state, run_id = running.run_stage("ferry_preflight", 600, tmp_path / "preflight.log")
        assert state == "success", running.describe("ferry_preflight", run_id, "the run failed")
        tis = running.task_instances("ferry_preflight", run_id)
        assert tis and all(ti["state"] in ("success", "skipped") for ti in tis)
        # Run by the scheduler's own processes: the machine's name, not a Celery worker's (worker1, worker2).
        assert {ti["hostname"] for ti in tis if ti["state"] == "success"} == {socket.getfqdn()}
