"""The docker-compose stand's seeder (``python -m stand.compose_seed``) against empty real services:
fresh databases on the test clusters, a fresh moto server, a fresh Kubernetes API stand-in. The
compose file itself cannot run here (no Docker engine); this is the code its stand-seed runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import httpx
import psycopg
import pytest
import yaml

from stand.core import ROOT, conn_json, venv_bin, wait_for_port
from stand.seeding import APP_ROLE, DEPLOYMENTS, NAMESPACE, row_counts
from stand.services.postgres import CLUSTERS, PostgresPair

DATABASE = "compose_seed"
ROWS = 2_000


@pytest.fixture
def empty_services(stand, tmp_path):
    """A moto server and a Kubernetes API stand-in of their own, started empty; the databases the
    seeder makes are dropped afterwards."""
    moto_port, kube_port = stand.port(40), stand.port(41)
    env = os.environ | {"PYTHONPATH": str(ROOT / "include"), "KUBE_STANDIN_DELAY": "0"}
    procs = [
        subprocess.Popen(
            [venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [venv_bin("uvicorn"), "stand.kube_api:app", "--host", "127.0.0.1", "--port", str(kube_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_for_port(moto_port, what="moto_server")
        wait_for_port(kube_port, what="kube stand-in")
        yield moto_port, kube_port
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        for cluster in CLUSTERS:
            with PostgresPair().admin(stand, cluster, "postgres") as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def seeder_env(stand, tmp_path: Path, moto_port: int, kube_port: int) -> dict[str, str]:
    """What docker-compose.yaml gives stand-seed, pointed at the test's services."""
    aws = conn_json(
        conn_type="aws",
        login="testing",
        password="testing",
        extra={"endpoint_url": f"http://127.0.0.1:{moto_port}", "region_name": "us-east-1"},
    )
    # As k3s writes it: a server address that only k3s's own container reaches.
    k3s_kubeconfig = tmp_path / "k3s" / "kubeconfig.yaml"
    k3s_kubeconfig.parent.mkdir()
    k3s_kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "default",
                "clusters": [{"name": "default", "cluster": {"server": "http://127.0.0.1:1"}}],
                "users": [{"name": "default", "user": {"token": "stand-in-accepts-any-token"}}],
                "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
            }
        )
    )
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT / "include"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **PostgresPair().env(stand, DATABASE),  # as the stand's, to the seeder's own database
        "AIRFLOW_CONN_AWS_DEFAULT": aws,
        "AIRFLOW_CONN_DO_SPACES": aws,  # one moto for both: their buckets differ
        "AIRFLOW_CONN_KUBE_STAND": conn_json(
            conn_type="kubernetes",
            extra={"kube_config_path": str(tmp_path / "kube" / "ferry-kubeconfig.yaml"), "namespace": NAMESPACE},
        ),
        "FERRY_K3S_KUBECONFIG": str(k3s_kubeconfig),
        "FERRY_K3S_SERVER": f"http://127.0.0.1:{kube_port}",
        "FERRY_STAND_ROWS": str(ROWS),
        "FERRY_SEED_TIMEOUT_S": "30",
    }


def run_seeder(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stand.compose_seed"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def stand_state(stand, moto_port: int, kube_port: int) -> dict:
    with PostgresPair().admin(stand, "source", DATABASE) as src, PostgresPair().admin(stand, "target", DATABASE) as tgt:
        rows = {t: src.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in row_counts(ROWS)}
        target_tables = tgt.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    client = {
        "endpoint_url": f"http://127.0.0.1:{moto_port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3 = boto3.client("s3", **client)
    buckets = {b["Name"]: s3.list_objects_v2(Bucket=b["Name"]).get("KeyCount", 0) for b in s3.list_buckets()["Buckets"]}
    zones = [z["Name"] for z in boto3.client("route53", **client).list_hosted_zones()["HostedZones"]]
    eks = boto3.client("eks", **client).describe_cluster(name="stand")["cluster"]["name"]
    rds = [d["DBInstanceIdentifier"] for d in boto3.client("rds", **client).describe_db_instances()["DBInstances"]]
    deployments = httpx.get(f"http://127.0.0.1:{kube_port}/apis/apps/v1/namespaces/{NAMESPACE}/deployments").json()
    return {
        "rows": rows,
        "target_tables": target_tables,
        "buckets": buckets,
        "zones": zones,
        "eks": eks,
        "rds": rds,
        "deployments": {
            d["metadata"]["name"]: (d["spec"]["replicas"], d["spec"]["template"]["spec"]["containers"][0]["image"])
            for d in deployments["items"]
        },
    }


def test_seeder_seeds_empty_services_and_a_second_run_changes_nothing(stand, empty_services, tmp_path):
    moto_port, kube_port = empty_services
    env = seeder_env(stand, tmp_path, moto_port, kube_port)
    first = run_seeder(env)
    assert first.returncode == 0, first.stderr
    assert "source PostgreSQL: database compose_seed" in first.stdout
    assert f"seeded {ROWS:,} rows on the source" in first.stdout
    assert "moto (aws): seeded" in first.stdout and "moto (spaces): seeded" in first.stdout
    state = stand_state(stand, moto_port, kube_port)
    assert state["rows"] == row_counts(ROWS)
    assert state["target_tables"] == 0  # the target is empty until week_prior copies the schema
    assert state["buckets"]["stand-uploads"] == 40 and state["buckets"]["ferry-stand-ledger"] == 0
    assert state["zones"] == ["stand.example.com."]
    assert (state["eks"], state["rds"]) == ("stand", ["stand-saas"])
    assert {name: tuple(spec) for name, spec in DEPLOYMENTS.items()} == state["deployments"]
    # The kubeconfig the Airflow services read points at the API as they reach it.
    kubeconfig = yaml.safe_load((tmp_path / "kube" / "ferry-kubeconfig.yaml").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{kube_port}"
    # The Airflow connection the compose file gives works for the application role.
    app = json.loads(env["AIRFLOW_CONN_FERRY_TARGET_APP"])
    with psycopg.connect(
        host=app["host"], port=app["port"], user=app["login"], password=app["password"], dbname=DATABASE
    ) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == APP_ROLE

    second = run_seeder(env)
    assert second.returncode == 0, second.stderr
    assert "sample schema already there" in second.stdout
    assert "moto (aws): already seeded" in second.stdout and "moto (spaces): already seeded" in second.stdout
    assert "namespace and deployments already there" in second.stdout
    assert stand_state(stand, moto_port, kube_port) == state
    for secret in (stand.secret("source_superuser"), stand.secret("target_superuser"), stand.secret("app_role")):
        assert secret not in first.stdout + first.stderr + second.stdout + second.stderr


def test_seeder_names_a_half_seeded_moto_and_the_fix(stand, empty_services, tmp_path):
    moto_port, kube_port = empty_services
    env = seeder_env(stand, tmp_path, moto_port, kube_port)
    boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{moto_port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="ferry-stand-ledger")
    result = run_seeder(env)
    assert result.returncode == 1
    assert "moto (aws)" in result.stderr and "seeded half-way (bucket ferry-stand-ledger exists" in result.stderr
    assert "restart that moto service" in result.stderr


def test_seeder_without_a_connection_says_which(stand, tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT / "include")}
    result = run_seeder(env)
    assert result.returncode == 1
    assert "AIRFLOW_CONN_FERRY_TARGET_APP is not set" in result.stderr
