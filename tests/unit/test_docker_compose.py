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
from stand.seeding import DEPLOYMENTS

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
            assert_kubeconfig_reaches_k3s(services, Path(extra["kube_config_path"]))
        else:
            host = urlparse(extra["endpoint_url"]).hostname if "endpoint_url" in extra else conn["host"]
        assert host in services, f"{conn_id} points at {host}, which is not a service"


def volume_of(service: dict, folder: Path) -> str:
    """The named volume ``service`` mounts at ``folder``."""
    return next(m.split(":")[0] for m in service["volumes"] if m.split(":")[1] == str(folder))


def assert_kubeconfig_reaches_k3s(services: dict, kubeconfig: Path) -> None:
    """stand-seed writes Airflow's kubeconfig from the one k3s writes into a shared volume, with a
    server address k3s's certificate names."""
    volume = volume_of(services["airflow-scheduler"], kubeconfig.parent)
    seed = services["stand-seed"]
    from_k3s = Path(seed["environment"]["FERRY_K3S_KUBECONFIG"])
    assert volume_of(seed, kubeconfig.parent) == volume
    assert not any(m.endswith(":ro") for m in seed["volumes"] if m.startswith(f"{volume}:"))
    assert volume_of(seed, from_k3s.parent) == volume
    k3s_output = Path(services["k3s"]["environment"]["K3S_KUBECONFIG_OUTPUT"])
    assert volume_of(services["k3s"], k3s_output.parent) == volume and k3s_output.name == from_k3s.name
    assert kubeconfig.name != from_k3s.name  # k3s rewrites its own on every start
    server = urlparse(seed["environment"]["FERRY_K3S_SERVER"])
    assert server.hostname == "k3s" and f"--tls-san={server.hostname}" in services["k3s"]["command"]


def test_the_stand_is_seeded_before_airflow_and_the_vm_start(compose):
    services = compose["services"]
    seed = services["stand-seed"]
    assert seed["command"] == ["python", "-m", "stand.compose_seed"]
    assert (ROOT / "include" / "stand" / "compose_seed.py").is_file()
    scheduler_env = services["airflow-scheduler"]["environment"]
    for name, value in scheduler_env.items():  # the seeder reads the connections Airflow gets
        if name.startswith("AIRFLOW_CONN_"):
            assert seed["environment"][name] == value, name
    for name in [*AIRFLOW_SERVICES, "recorder", "old-vm"]:
        assert services[name]["depends_on"]["stand-seed"]["condition"] == "service_completed_successfully", name
    for name in ("source-db", "target-db"):
        assert seed["depends_on"][name]["condition"] == "service_healthy"
    # The VM's write load logs in as the role the seeder creates, with its password.
    app = json.loads(scheduler_env["AIRFLOW_CONN_FERRY_TARGET_APP"])
    load = urlparse(services["old-vm"]["environment"]["FERRY_LOAD_DSN"])
    assert (load.username, load.password, load.hostname) == (app["login"], app["password"], "127.0.0.1")
    assert load.port == 6432  # through the VM's PgBouncer, which the pooler's admin connection reaches
    pooler = json.loads(scheduler_env["AIRFLOW_CONN_OLD_POOLER"])
    assert (pooler["host"], pooler["port"], pooler["schema"]) == ("old-vm", 6432, "pgbouncer")
    entrypoint = (ROOT / "include" / "docker" / "vm-entrypoint.sh").read_text()
    assert "saas = host=source-db port=5432 dbname=saas" in entrypoint and "listen_port = 6432" in entrypoint
    assert f'"{pooler["login"]}" "{pooler["password"]}"' in entrypoint.replace("\\n", "\n")


def test_k3s_can_pull_every_image_the_plan_deploys(compose):
    services = compose["services"]
    plan = load_plan(ROOT / services["airflow-scheduler"]["environment"]["FERRY_PLAN"].removeprefix("/opt/airflow/"))
    registries_mount = next(m for m in services["k3s"]["volumes"] if m.endswith("/etc/rancher/k3s/registries.yaml:ro"))
    mirrors = yaml.safe_load((ROOT / registries_mount.split(":")[0]).read_text())["mirrors"]
    copies = " ".join(services["registry-seed"]["command"])
    assert services["stand-seed"]["depends_on"]["registry-seed"]["condition"] == "service_completed_successfully"
    images = {d.image for d in plan.kubernetes.deployments} | {image for _, image in DEPLOYMENTS.values()}
    for image in sorted(images):
        registry, _, name = image.partition("/")
        endpoint = urlparse(mirrors[registry]["endpoint"][0])
        assert endpoint.hostname in services, f"{registry} is mirrored to {endpoint.hostname}, not a service"
        assert f"{endpoint.hostname}:{endpoint.port}/{name}" in copies, f"registry-seed does not copy {name}"


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
