"""``make airflow`` serves the UI where it says (FERRY_AIRFLOW_PORT, 8080); the rehearsal on the stand's port."""

from __future__ import annotations

from deployment import API_OFFSET, Deployment


def test_the_ui_port_comes_from_ferry_airflow_port_else_the_stands_base(tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_AIRFLOW_PORT", "8080")
    assert Deployment(home=tmp_path, log_dir=tmp_path / "logs").url == "http://127.0.0.1:8080"
    monkeypatch.delenv("FERRY_AIRFLOW_PORT")
    monkeypatch.setenv("FERRY_STAND_PORT_BASE", "26320")
    assert Deployment(home=tmp_path, log_dir=tmp_path / "logs").url == f"http://127.0.0.1:{26320 + API_OFFSET}"
