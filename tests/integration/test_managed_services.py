"""Ferry as the managed services let it run: no superuser, SSL only, PostgreSQL 16 (the old side) to 17 (RDS).

The stand's servers behave like DigitalOcean's and RDS's: Ferry's logins are not superusers and every session is
encrypted. The pre-flight's privilege check names each right Ferry's steps will use that its login lacks, with
the grant; each right is removed here in turn (by the stand's superuser, as a provider's console would) and put
back.
"""

from __future__ import annotations

import json
import os

import psycopg
import pytest
from airflow.sdk import BaseHook

from ferry.checks.connectivity import check_reverse_replication
from ferry.checks.privileges import check_privileges
from ferry.hooks.postgres import FerryPostgresHook, libpq_params, subscription_conninfo
from ferry.hooks.replication import ReplicationHook
from ferry.plan import load_plan
from stand.seeding import DATABASE, SOURCE_LOGIN, TARGET_LOGIN, ensure_role_and_database
from stand.services.postgres import HBA, LOGICAL, debian_server, start_cluster, stop_cluster
from stand.tls import tls_files

from .conftest import app_connection


def test_ferrys_logins_are_not_superusers_and_every_session_is_ssl(stand):
    versions = {}
    for conn_id in ("ferry_source", "ferry_target", "ferry_source_app", "ferry_target_app"):
        with FerryPostgresHook(conn_id, DATABASE).session() as conn:
            row = conn.execute(
                "SELECT r.rolsuper, s.ssl, s.version, current_setting('server_version_num')::int / 10000 "
                "FROM pg_roles r, pg_stat_ssl s WHERE r.rolname = current_user AND s.pid = pg_backend_pid()"
            ).fetchone()
        superuser, ssl, tls_version, major = row
        assert superuser is False, f"{conn_id} logs in as a superuser"
        assert ssl is True and tls_version.startswith("TLSv1."), f"{conn_id}: session not encrypted"
        versions[conn_id] = major
    assert versions == {"ferry_source": 16, "ferry_target": 17, "ferry_source_app": 16, "ferry_target_app": 17}
    assert BaseHook.get_connection("ferry_source").login == SOURCE_LOGIN
    assert BaseHook.get_connection("ferry_target").login == TARGET_LOGIN


def test_the_servers_refuse_a_session_without_ssl(stand):
    for port in (stand.port(1), stand.port(2)):
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            psycopg.connect(
                host="127.0.0.1",
                port=port,
                dbname=DATABASE,
                user="saas_app",
                password=stand.secret("app_role"),
                sslmode="disable",
            )


def test_every_connection_string_carries_the_connections_ssl_settings(stand, monkeypatch):
    source = BaseHook.get_connection("ferry_source")
    params = libpq_params(source, "saas", application_name="x")
    assert params["sslmode"] == "verify-full" and params["sslrootcert"] == str(tls_files(stand).ca)
    env = FerryPostgresHook("ferry_source", "saas").libpq_env()  # pg_dump and psql
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == str(tls_files(stand).ca)
    conninfo = subscription_conninfo(source, "saas", "ferry_x")
    assert "sslmode=verify-full" in conninfo and f"sslrootcert={tls_files(stand).ca}" in conninfo

    # Where the subscriber's server finds the CA differs from Airflow's worker: the subscription takes its own.
    conn = json.loads(os.environ["AIRFLOW_CONN_FERRY_SOURCE"])
    conn["extra"] |= {"subscriber_sslrootcert": "/etc/ssl/rds-global-bundle.pem", "iam": False}
    monkeypatch.setenv("AIRFLOW_CONN_FERRY_SOURCE", json.dumps(conn))
    source = BaseHook.get_connection("ferry_source")
    assert "sslrootcert=/etc/ssl/rds-global-bundle.pem" in subscription_conninfo(source, "saas", "ferry_x")
    assert "iam" not in libpq_params(source) and "subscriber_sslrootcert" not in libpq_params(source)
    # ... and the hook itself still connects with the extras libpq does not know left out.
    assert FerryPostgresHook("ferry_source", "saas").fetch("ping")[0]["user"] == SOURCE_LOGIN


def test_the_privilege_check_passes_on_the_stand(stand):
    result = check_privileges(load_plan())
    assert result.status == "pass", result.findings
    assert "source: an SSL session (every connection" in result.findings[2]
    assert any(
        f.startswith("source: ownership of 10 table(s) in scope") and f.endswith(": ok") for f in result.findings
    )


# Each right removed by the stand's superuser, the finding the check must give, and how the right comes back.
RIGHTS = {
    "source replication": (
        "source",
        ["ALTER ROLE doadmin NOREPLICATION"],
        "source: replication (REPLICATION, or rds_replication on RDS)",
        "ALTER ROLE doadmin REPLICATION",
        ["ALTER ROLE doadmin REPLICATION"],
    ),
    "source pg_signal_backend": (
        "source",
        ["REVOKE pg_signal_backend FROM doadmin"],
        "source: pg_signal_backend (the fence ends the application's sessions): MISSING",
        "GRANT pg_signal_backend TO doadmin",
        ["GRANT pg_signal_backend TO doadmin"],
    ),
    "source pg_create_subscription": (
        "source",
        ["REVOKE pg_create_subscription FROM doadmin"],
        "source: pg_create_subscription (PostgreSQL 16 or later) (the reverse replication's subscription",
        "GRANT pg_create_subscription TO doadmin",
        ["GRANT pg_create_subscription TO doadmin"],
    ),
    "source table ownership": (  # to a role of its own: the grants doadmin made (saas_app's) move with it and back
        "source",
        ["CREATE ROLE ferry_test_owner NOLOGIN", "ALTER TABLE public.events OWNER TO ferry_test_owner"],
        "source: ownership of 10 table(s) in scope, lacking on public.events (owner ferry_test_owner)",
        "ALTER TABLE <table> OWNER TO doadmin",
        ["ALTER TABLE public.events OWNER TO doadmin", "DROP ROLE ferry_test_owner"],
        3,  # and its sequence (the owner's too) unreadable; the reverse subscription could not apply as that owner
    ),
    "source CREATE on the database": (
        "source",
        ["ALTER DATABASE saas OWNER TO postgres"],
        "source: CREATE on the database (the publication; the fence's function in schema ferry): MISSING",
        "GRANT CREATE ON DATABASE saas TO doadmin",
        ["ALTER DATABASE saas OWNER TO doadmin"],
    ),
    "source sequences": (
        "source",
        ["REVOKE ALL ON SEQUENCE public.invoice_number_seq FROM doadmin"],
        "source: reading 6 sequence(s), not public.invoice_number_seq",
        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA <schema> TO doadmin",
        ["GRANT ALL ON SEQUENCE public.invoice_number_seq TO doadmin"],
    ),
    "target pg_create_subscription": (
        "target",
        ["REVOKE pg_create_subscription FROM rds_superuser"],
        "target: pg_create_subscription (PostgreSQL 16 or later) (the subscription that copies",
        "GRANT rds_superuser TO rds_master",
        ["GRANT pg_create_subscription TO rds_superuser"],
    ),
    "target replication": (
        "target",
        ["ALTER ROLE rds_master NOREPLICATION"],
        "target: replication (REPLICATION, or rds_replication on RDS)",
        "GRANT rds_replication TO rds_master",
        ["ALTER ROLE rds_master REPLICATION"],
    ),
    "target pg_signal_backend": (
        "target",
        ["REVOKE pg_signal_backend FROM rds_superuser"],
        "target: pg_signal_backend (the fence on the way back ends the application's sessions on the new side)",
        "GRANT rds_superuser TO rds_master",
        ["GRANT pg_signal_backend TO rds_superuser"],
    ),
    "target CREATE on the database": (
        "target",
        ["ALTER DATABASE saas OWNER TO postgres"],
        "target: CREATE on the database (the subscription; the schema copy's schemas",
        "GRANT CREATE ON DATABASE saas TO rds_master",
        ["ALTER DATABASE saas OWNER TO rds_master"],
    ),
}


@pytest.mark.parametrize("right", list(RIGHTS))
def test_the_privilege_check_names_each_missing_right_and_its_grant(stand, right):
    side, remove, finding, grant, restore, *missing = RIGHTS[right]
    admin = stand_admin(stand, side)
    try:
        for statement in remove:
            admin.execute(statement)
        result = check_privileges(load_plan())
    finally:
        for statement in restore:
            admin.execute(statement)
        admin.close()
    assert result.status == "fail"
    named = [f for f in result.findings if f.startswith(finding)]
    assert len(named) == 1, (finding, result.findings)
    assert "MISSING; grant it: " in named[0] and grant in named[0]
    assert sum("MISSING" in f for f in result.findings) == (missing or [1])[0], result.findings
    assert check_privileges(load_plan()).status == "pass"
    with app_connection(stand, "source") as app:  # what was taken and given back leaves the application's rights
        app.execute("UPDATE events SET kind = kind WHERE id = 1")


def test_a_large_object_the_application_owns_is_named_until_ferrys_login_may_read_it(stand):
    with app_connection(stand, "source") as app:
        oid = app.execute("SELECT lo_from_bytea(0, 'receipt')").fetchone()[0]
    try:
        result = check_privileges(load_plan())
        assert result.status == "fail"
        assert any(
            f.startswith("source: reading 3 large object(s), not 1 of saas_app's (the large objects' copy")
            and "GRANT <owner> TO doadmin" in f
            for f in result.findings
        ), result.findings
        # On the target, rds_master must be able to give the copy to saas_app.
        assert any(
            f.startswith("target: SET ROLE to the large objects' owners, not saas_app") for f in result.findings
        ), result.findings
        with stand_admin(stand, "source") as admin:
            admin.execute("GRANT saas_app TO doadmin")
        with stand_admin(stand, "target") as admin:
            admin.execute("GRANT saas_app TO rds_master")
        assert check_privileges(load_plan()).status == "pass"
    finally:
        with stand_admin(stand, "source") as admin:
            admin.execute(f"SELECT lo_unlink({oid})")
            admin.execute("REVOKE saas_app FROM doadmin")
        with stand_admin(stand, "target") as admin:
            admin.execute("REVOKE saas_app FROM rds_master")


@pytest.fixture
def old_side_on_15(stand, monkeypatch):
    """A PostgreSQL 15 server (Debian's) as the old side, SSL only, Ferry logging in as a doadmin-like role;
    the plan's source pointed at it."""
    cluster, offset = "old15", 30
    start_cluster(
        stand,
        cluster,
        offset,
        f"{LOGICAL} -c ssl=on -c ssl_cert_file={tls_files(stand).cert} -c ssl_key_file={tls_files(stand).key}",
        debian_server(),
        hba=HBA,
    )
    password = stand.secret("old15_login")
    with psycopg.connect(
        host=str(stand.dir / "pg" / cluster), port=stand.port(offset), user="postgres", dbname="postgres"
    ) as admin:
        admin.autocommit = True
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'doadmin'").fetchone():
            admin.execute(
                "CREATE ROLE doadmin LOGIN NOSUPERUSER REPLICATION CREATEDB CREATEROLE PASSWORD "
                + psycopg.sql.Literal(password).as_string(admin)
            )
            admin.execute("GRANT pg_read_all_stats, pg_signal_backend TO doadmin")
        ensure_role_and_database(admin, stand.secret("app_role"), owner="doadmin")
    conn = json.loads(os.environ["AIRFLOW_CONN_FERRY_SOURCE"])
    conn |= {"port": stand.port(offset), "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_FERRY_SOURCE", json.dumps(conn))
    yield
    stop_cluster(stand, cluster)


def test_an_old_side_on_postgresql_15_gets_a_clear_reverse_replication_message(stand, old_side_on_15):
    plan = load_plan()
    assert ReplicationHook("ferry_source", "saas").server_version_num() // 10000 == 15
    reverse = check_reverse_replication(plan)
    assert reverse.status == "fail"
    assert (
        "old source: it runs PostgreSQL 15 and Ferry's login doadmin is not a superuser; only PostgreSQL 16 and "
        "later let a login that is not one create a subscription" in reverse.summary
    )
    assert "upgrade the old cluster to 16 or later before D-day" in reverse.summary
    privileges = check_privileges(plan)
    assert any(
        f.startswith("source: pg_create_subscription (PostgreSQL 16 or later)") and "MISSING" in f
        for f in privileges.findings
    ), privileges.findings


def stand_admin(stand, side: str) -> psycopg.Connection:
    """The stand's superuser on ``side``'s saas database (what a provider's console does), autocommit."""
    return psycopg.connect(
        host=str(stand.dir / "pg" / side),
        port=stand.port(1 if side == "source" else 2),
        user="postgres",
        dbname=DATABASE,
        autocommit=True,
    )
