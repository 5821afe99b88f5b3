"""docker-compose.yaml (for machines with Docker; none here): it parses, runs Airflow 3.3's components
with dags/, plugins/ and include/ mounted, and has a service behind every connection of the stand plan."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from ferry.plan import load_plan

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_airflow_runs_its_components_on_a_postgres_metadata_database(compose):
    services = compose["services"]
    for name, command in zip(AIRFLOW_SERVICES, ("api-server", "scheduler", "dag-processor", "triggerer"), strict=True):
        assert services[name]["command"] == command
        env = services[name]["environment"]
        assert "@airflow-metadata-db/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["airflow-metadata-db"]["image"].startswith("postgres:")
    assert "airflow db migrate" in " ".join(services["airflow-init"]["command"])
    dockerfile = ROOT / services["airflow-scheduler"]["build"]["dockerfile"]
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile.read_text()
    assert "3.3.2" in (ROOT / "requirements.txt").read_text().split("apache-airflow==")[1].splitlines()[0]


def test_every_airflow_service_mounts_dags_plugins_and_include(compose):
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        mounts = {m.split(":")[0]: m.split(":")[1] for m in compose["services"][name]["volumes"]}
        for folder in ("dags", "plugins", "include"):
            assert mounts.get(f"./{folder}") == f"/opt/airflow/{folder}", (name, folder)
            assert (ROOT / folder).is_dir()


def test_every_connection_of_the_stand_plan_points_at_a_service_of_the_file(compose):
    services = compose["services"]
    env = services["airflow-scheduler"]["environment"]
    plan = load_plan(ROOT / env["FERRY_PLAN"].removeprefix("/opt/airflow/"))
    needed = set(plan.connections()) | {"ferry_target_app"}  # the SSM templates read ferry_target_app
    for conn_id in sorted(needed):
        conn = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        extra = conn.get("extra", {})
        if conn["conn_type"] == "kubernetes":
            host = "k3s"
            kubeconfig = Path(extra["kube_config_path"])
            volume = next(
                m for m in services["airflow-scheduler"]["volumes"] if m.split(":")[1] == str(kubeconfig.parent)
            )
            assert any(v.split(":")[0] == volume.split(":")[0] for v in services["k3s"]["volumes"])
            assert services["k3s"]["environment"]["K3S_KUBECONFIG_OUTPUT"].endswith(kubeconfig.name)
        else:
            host = urlparse(extra["endpoint_url"]).hostname if "endpoint_url" in extra else conn["host"]
        assert host in services, f"{conn_id} points at {host}, which is not a service"


def test_the_stand_databases_replicate_logically(compose):
    for name in ("source-db", "target-db"):
        service = compose["services"][name]
        assert service["image"] == "postgres:15"
        assert re.search(r"-c wal_level=logical\b", service["command"])
    for mount in compose["services"]["source-db"].get("volumes", []):  # every file it mounts exists
        assert (ROOT / mount.split(":")[0]).is_file(), mount


def test_aws_is_moto_at_the_version_the_tests_use(compose):
    pinned = next(
        line.split("==")[1]
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("moto")
    )
    for name in ("moto", "spaces"):
        assert compose["services"][name]["image"] == f"motoserver/moto:{pinned}"
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
