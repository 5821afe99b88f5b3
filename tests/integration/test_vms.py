"""VM services over SSH against the stand's throwaway sshd: stop and start verified, host keys enforced."""

from __future__ import annotations

import json
import os
import subprocess

import httpx

from stand.control import load
from tests.integration.conftest import TEST_DAGS, run_dag, twice


def old_app_answers(stand) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{stand.port(8)}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_stop_then_start_the_units_each_twice(stand):
    load(stand, "start", rate=20)
    try:
        assert old_app_answers(stand) and stand.process_alive("load")
        assert twice("ferry_test_vms_stop") == 2
        assert not old_app_answers(stand) and not stand.process_alive("load")
        assert twice("ferry_test_vms_start") == 2
        assert old_app_answers(stand) and stand.process_alive("load")
    finally:
        load(stand, "stop")


def test_an_unknown_host_key_is_refused_and_nothing_changes(stand, monkeypatch, tmp_path, capfd):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    conn = json.loads(os.environ["AIRFLOW_CONN_VM_STAND"])
    conn["extra"]["host_key"] = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    conn["extra"]["no_host_key_check"] = True  # Ferry verifies whatever the connection asks for
    monkeypatch.setenv("AIRFLOW_CONN_VM_STAND", json.dumps(conn))
    capfd.readouterr()
    assert run_dag(TEST_DAGS, "ferry_test_vms_stop").state == "failed"
    assert "does not match" in "".join(capfd.readouterr())  # paramiko: "Host key for server ... does not match"
    assert old_app_answers(stand)
