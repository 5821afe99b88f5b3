"""What the stand holds before Ferry runs, seeded the same way on the local stand and in
docker-compose.yaml (``python -m stand.compose_seed``): the application role and database on both
clusters, the sample schema and rows on the source, the namespace and deployments in the new
Kubernetes cluster. AWS and Spaces are seeded by ``stand.services.moto.seed_aws``/``seed_spaces``.
Every function is safe to run again: it leaves what already exists alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

DATABASE = "saas"
APP_ROLE = "saas_app"
# A second writer the plan does not list: a reporting tool that logs in as saas_reports and writes
# events through the group role saas_reporting. The fence must hold it too.
REPORTS_ROLE, REPORTS_GROUP = "saas_reports", "saas_reporting"
# Ferry's own logins, as the managed services give them: neither is a superuser (see ensure_managed_login).
SOURCE_LOGIN, TARGET_LOGIN = "doadmin", "rds_master"
SQL_DIR = Path(__file__).resolve().parent / "sql"
NAMESPACE = "saas"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DEPLOYMENTS = {  # name: (replicas, image), as CI/CD would have deployed them in the new cluster
    "web": (2, f"{REGISTRY}/saas-web:2026.11.20"),
    "sidekiq": (1, f"{REGISTRY}/saas-web:2026.11.20"),
    "pgbouncer": (2, f"{REGISTRY}/pgbouncer:1.23"),
}


def ensure_managed_login(conn: psycopg.Connection, side: str, password: str) -> str:
    """Ferry's login on ``side`` as the managed service creates it (a superuser connection, autocommit); its name.

    - source, like DigitalOcean's ``doadmin``: not a superuser; REPLICATION, CREATEDB, CREATEROLE; a member of
      pg_read_all_stats, pg_signal_backend and pg_create_subscription; it owns the application's database and
      what the application's migrations made in it.
    - target, like RDS's master user: not a superuser; CREATEROLE, CREATEDB; a member of ``rds_superuser``
      (pg_create_subscription, pg_signal_backend, pg_read_all_stats, pg_monitor) and of ``rds_replication``.
      RDS's own patch makes ``rds_replication`` grant replication; stock PostgreSQL inherits no role attribute,
      so the stand gives the master REPLICATION itself, which is what that membership amounts to on RDS.
    """
    if side == "source":
        login, statements = (
            SOURCE_LOGIN,
            [
                "CREATE ROLE {login} LOGIN NOSUPERUSER REPLICATION CREATEDB CREATEROLE PASSWORD {password}",
                "GRANT pg_read_all_stats, pg_signal_backend, pg_create_subscription TO {login}",
            ],
        )
    else:
        login, statements = (
            TARGET_LOGIN,
            [
                "CREATE ROLE rds_superuser NOLOGIN CREATEROLE CREATEDB",
                "GRANT pg_create_subscription, pg_signal_backend, pg_read_all_stats, pg_monitor TO rds_superuser",
                "CREATE ROLE rds_replication NOLOGIN REPLICATION",
                "CREATE ROLE {login} LOGIN NOSUPERUSER CREATEROLE CREATEDB REPLICATION PASSWORD {password} "
                "IN ROLE rds_superuser, rds_replication",
            ],
        )
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
        for statement in statements:
            conn.execute(sql.SQL(statement).format(login=sql.Identifier(login), password=sql.Literal(password)))
    return login


def ensure_role_and_database(
    conn: psycopg.Connection,
    app_password: str,
    database: str = DATABASE,
    reports_password: str | None = None,
    owner: str | None = None,
) -> list[str]:
    """The application's login role, the reporting tool's roles and ``database`` (owned by ``owner`` when
    given) on one cluster (a superuser connection to any database, autocommit); returns what it created."""
    created = []
    roles = [
        (REPORTS_GROUP, sql.SQL("NOLOGIN")),
        (APP_ROLE, sql.SQL("LOGIN PASSWORD {}").format(sql.Literal(app_password))),
        (
            REPORTS_ROLE,
            sql.SQL("LOGIN IN ROLE {}{}").format(
                sql.Identifier(REPORTS_GROUP),
                sql.SQL(" PASSWORD {}").format(sql.Literal(reports_password)) if reports_password else sql.SQL(""),
            ),
        ),
    ]
    for role, options in roles:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(role), options))
            created.append(f"role {role}")
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
        conn.execute(
            sql.SQL("CREATE DATABASE {}{}").format(
                sql.Identifier(database), sql.SQL(" OWNER {}").format(sql.Identifier(owner)) if owner else sql.SQL("")
            )
        )
        created.append(f"database {database}")
    return created


def row_counts(rows: int) -> dict[str, int]:
    """How ``rows`` sample rows split between the tables."""
    counts = {
        "customers": rows // 10,
        "subscriptions": rows * 15 // 100,
        "invoices": rows * 35 // 100,
        "events": rows * 28 // 100,
        "usage_records": rows // 50,
        "documents": min(200, max(1, rows // 10_000)),  # each with a large object
    }
    counts["page_views"] = rows - sum(counts.values())
    return counts


def seed_source(conn: psycopg.Connection, rows: int, owner: str | None = None) -> dict[str, int] | None:
    """The sample schema and ``rows`` rows in all, in the source database ``conn`` is connected to
    (superuser, autocommit), made as ``owner`` when given (who ran the application's migrations);
    None when the schema is already there."""
    if conn.execute("SELECT to_regclass('public.customers')").fetchone()[0]:
        return None
    started = time.monotonic()
    if owner:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
    conn.execute((SQL_DIR / "schema.sql").read_text())
    counts = row_counts(rows)
    conn.execute((SQL_DIR / "seed.sql").read_text().format(**counts))
    conn.execute("RESET ROLE")
    conn.execute("VACUUM ANALYZE")
    print(
        f"  seeded {rows:,} rows on the source in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{t} {c:,}" for t, c in counts.items())
    )
    return counts


def deployment(name: str, replicas: int, image: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}},
        },
    }


def seed_kubernetes(api_client: Any, namespace: str = NAMESPACE) -> list[str]:
    """The application's namespace and deployments, through a ``kubernetes.client.ApiClient``;
    returns what it created (what exists already is left as it is)."""
    from kubernetes.client import AppsV1Api, CoreV1Api
    from kubernetes.client.exceptions import ApiException

    def create(what: str, call: Any, *args: Any) -> str | None:
        try:
            call(*args)
        except ApiException as err:
            if err.status == 409:  # AlreadyExists
                return None
            raise
        return what

    created = [
        create(f"namespace {namespace}", CoreV1Api(api_client).create_namespace, {"metadata": {"name": namespace}})
    ]
    apps = AppsV1Api(api_client)
    for name, (replicas, image) in DEPLOYMENTS.items():
        created.append(
            create(
                f"deployment {name}", apps.create_namespaced_deployment, namespace, deployment(name, replicas, image)
            )
        )
    return [c for c in created if c]
