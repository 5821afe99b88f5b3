"""Telling a person: a failed scheduled pre-flight is posted to the plan's notification webhook.

A DAG's failure callback (run by Airflow's dag-processor, not by a worker). What it posts names the
DAG, the run, its type (scheduled or manual), the reason Airflow gives and the failed tasks where
known; never a connection, a password or a row. A notification that cannot be delivered is logged
and does not raise (the run has already failed; the log says so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def failure_message(context: dict[str, Any]) -> dict[str, Any]:
    """What a failed run's notification says, from Airflow's callback context."""
    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "?")
    run_type = str(getattr(dag_run, "run_type", "") or "").removeprefix("DagRunType.").lower()
    failed = []
    ti = context.get("ti") or context.get("task_instance")
    if ti is not None and getattr(ti, "task_id", None):
        failed.append(ti.task_id)
    return {
        "event": "ferry_run_failed",
        "dag_id": dag_id,
        "run_id": run_id,
        "run_type": run_type or "unknown",
        "reason": str(context.get("reason") or "a task failed"),
        "failed_tasks": failed,
        "what_to_do": f"open {dag_id}, run {run_id}, in Airflow: each failed task's log says what went wrong and what to do",
    }


def notify_failure(conn_id: str | None, endpoint: str = "/") -> Callable[[dict[str, Any]], None] | None:
    """A DAG ``on_failure_callback`` posting :func:`failure_message` to the HTTP connection ``conn_id``."""
    if not conn_id:
        return None

    def callback(context: dict[str, Any]) -> None:
        from airflow.providers.http.hooks.http import HttpHook

        message = failure_message(context)
        try:
            HttpHook(method="POST", http_conn_id=conn_id).run(endpoint, json=message)
            log.info("posted the failure of %s %s to %s", message["dag_id"], message["run_id"], conn_id)
        except Exception as exc:  # noqa: BLE001 - the run has failed already; say why the notice did not go
            log.error("could not post the failure of %s to %s: %s", message["dag_id"], conn_id, type(exc).__name__)

    return callback
