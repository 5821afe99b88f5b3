"""Seed the docker-compose stand: ``python -m stand.compose_seed`` (the ``stand-seed`` service).

It reads the same ``AIRFLOW_CONN_*`` variables the Airflow services get, waits for each service to
answer, then seeds it with the functions the local stand uses (``stand.seeding``,
``stand.services.moto``): the application role and database on both clusters and the sample rows
on the source; on moto what Terraform would have made on AWS; on the second moto the Spaces
buckets; in k3s the namespace and the deployments. It writes the kubeconfig the Airflow services
use: k3s's own, its server address rewritten to one the other containers reach.

Safe to run again: what exists is left alone, and a service seeded half-way is named with the fix.

Environment besides the connections:
  FERRY_STAND_ROWS        sample rows in all on the source (default 1,000,000)
  FERRY_K3S_KUBECONFIG    the kubeconfig k3s writes
  FERRY_K3S_SERVER        the Kubernetes API as the other containers reach it (https://k3s:6443)
  FERRY_SEED_TIMEOUT_S    how long to wait for each service (default 300)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psycopg
import yaml
from botocore.exceptions import ClientError

from stand.core import DEFAULT_ROWS
from stand.seeding import APP_ROLE, ensure_role_and_database, seed_kubernetes, seed_source
from stand.services.moto import SOURCE_BUCKETS, seed_aws, seed_spaces


class SeedError(RuntimeError):
    """A service could not be seeded; the message says which and what to do."""


def connection(conn_id: str) -> dict[str, Any]:
    """The Airflow connection ``conn_id`` from its ``AIRFLOW_CONN_*`` variable (JSON form)."""
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    if name not in os.environ:
        raise SeedError(f"{name} is not set: give the seeder the same environment as the Airflow services")
    try:
        conn = json.loads(os.environ[name])
    except json.JSONDecodeError as err:
        raise SeedError(f"{name} is not JSON ({err.msg}): write the connection in Airflow's JSON form") from None
    if isinstance(conn.get("extra"), str):
        conn["extra"] = json.loads(conn["extra"])
    return conn


def redact(text: str) -> str:
    """``text`` without the password of any connection in the environment."""
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_CONN_"):
            try:
                password = json.loads(value).get("password")
            except (json.JSONDecodeError, AttributeError):
                continue
            if password:
                text = text.replace(password, "***")
    return text


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
    """``probe()``'s result once it stops raising; says what it waits for every 10 s."""
    started = time.monotonic()
    said = started
    while True:
        try:
            return probe()
        except Exception as err:  # noqa: BLE001 - any failure means "not up yet" until the deadline
            now = time.monotonic()
            if now - started > timeout_s:
                raise SeedError(
                    f"{what} did not answer within {timeout_s:.0f} s (last: {type(err).__name__}: "
                    f"{redact(str(err))[:300]}); see `docker compose logs` for that service"
                ) from None
            if now - said >= 10:
                print(f"  waiting for {what} ({now - started:.0f} s so far)", flush=True)
                said = now
            time.sleep(1)


def postgres(conn: dict[str, Any], dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=conn["host"],
        port=conn.get("port", 5432),
        user=conn["login"],
        password=conn.get("password"),
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
    )


def seed_postgres(rows: int, timeout_s: float) -> None:
    app = connection("ferry_target_app")
    if app["login"] != APP_ROLE:
        raise SeedError(f"AIRFLOW_CONN_FERRY_TARGET_APP logs in as {app['login']}; the stand's role is {APP_ROLE}")
    for cluster in ("source", "target"):
        conn = connection(f"ferry_{cluster}")
        with wait_for(
            f"{cluster} PostgreSQL at {conn['host']}", lambda c=conn: postgres(c, "postgres"), timeout_s
        ) as db:
            created = ensure_role_and_database(db, app["password"], conn["schema"])
        print(f"{cluster} PostgreSQL: {', '.join(created) or 'role and database already there'}", flush=True)
    with postgres(connection("ferry_source"), connection("ferry_source")["schema"]) as db:
        if seed_source(db, rows) is None:
            print("source PostgreSQL: sample schema already there; rows left as they are", flush=True)


def aws_client_factory(conn_id: str) -> Callable[[str], Any]:
    conn = connection(conn_id)
    extra = conn.get("extra") or {}
    if not str(extra.get("endpoint_url", "")).startswith("http"):
        raise SeedError(f"connection {conn_id} has no endpoint_url: the stand never talks to real AWS")

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=extra["endpoint_url"],
            region_name=extra.get("region_name", "us-east-1"),
            aws_access_key_id=conn.get("login"),
            aws_secret_access_key=conn.get("password"),
        )

    return client


def _exists(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ClientError:
        return False
    return True


def seed_moto(conn_id: str, what: str, timeout_s: float) -> None:
    """Seed one moto server once: ``what`` is "aws" or "spaces"."""
    client = aws_client_factory(conn_id)
    s3 = client("s3")
    endpoint = s3.meta.endpoint_url
    wait_for(f"moto ({what}) at {endpoint}", s3.list_buckets, timeout_s)
    if what == "aws":
        done = _exists(lambda: client("eks").describe_cluster(name="stand"))  # seed_aws makes it last
        first = "ferry-stand-ledger"
        seed = seed_aws
    else:
        done = _exists(lambda: s3.head_object(Bucket="stand-exports", Key="exports/large.csv"))
        first = next(iter(SOURCE_BUCKETS))
        seed = seed_spaces
    if done:
        print(f"moto ({what}): already seeded", flush=True)
        return
    if _exists(lambda: s3.head_bucket(Bucket=first)):
        raise SeedError(
            f"moto ({what}) at {endpoint} is seeded half-way (bucket {first} exists, the rest does not): "
            f"restart that moto service (its state is in memory), then run stand-seed again"
        )
    seed(client)
    print(f"moto ({what}): seeded", flush=True)


def kubeconfig_for(text: str, server: str) -> str:
    """A kubeconfig with every cluster's server set to ``server``."""
    config = yaml.safe_load(text)
    clusters = config.get("clusters") or []
    if not clusters:
        raise SeedError("the k3s kubeconfig names no cluster")
    for cluster in clusters:
        cluster["cluster"]["server"] = server
    return yaml.safe_dump(config, sort_keys=False)


def seed_k3s(timeout_s: float) -> None:
    from kubernetes.client import VersionApi
    from kubernetes.config import new_client_from_config

    written_by_k3s = Path(os.environ.get("FERRY_K3S_KUBECONFIG", "/kube/kubeconfig.yaml"))
    server = os.environ.get("FERRY_K3S_SERVER", "https://k3s:6443")
    extra = connection("kube_stand").get("extra") or {}
    if "kube_config_path" not in extra:
        raise SeedError("AIRFLOW_CONN_KUBE_STAND has no extra.kube_config_path: name where the kubeconfig goes")
    ours = Path(extra["kube_config_path"])
    text = wait_for(f"k3s's kubeconfig at {written_by_k3s}", written_by_k3s.read_text, timeout_s)
    ours.parent.mkdir(parents=True, exist_ok=True)
    partial = ours.with_suffix(".partial")
    partial.write_text(kubeconfig_for(text, server))
    partial.chmod(0o644)
    partial.replace(ours)
    api = new_client_from_config(str(ours))
    try:
        wait_for(f"the Kubernetes API at {server}", VersionApi(api).get_code, timeout_s)
        created = wait_for("the Kubernetes API to accept objects", lambda: seed_kubernetes(api), timeout_s)
    finally:
        api.close()
    print(f"Kubernetes: kubeconfig {ours}; {', '.join(created) or 'namespace and deployments already there'}")


def main() -> int:
    rows = int(os.environ.get("FERRY_STAND_ROWS", DEFAULT_ROWS))
    timeout_s = float(os.environ.get("FERRY_SEED_TIMEOUT_S", "300"))
    started = time.monotonic()
    try:
        seed_postgres(rows, timeout_s)
        seed_moto("aws_default", "aws", timeout_s)
        seed_moto("do_spaces", "spaces", timeout_s)
        seed_k3s(timeout_s)
    except SeedError as err:
        print(f"stand-seed failed: {err}", file=sys.stderr)
        return 1
    print(f"stand seeded in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
