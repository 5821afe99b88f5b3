"""The old app's PgBouncer on the stand, driven as D-day drives it: PAUSE holds the application's queries (none
fails) and gives up past its timeout when a client holds a transaction open; the entry repointed over SSH."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from ferry.hooks.pooler import PoolerError, PoolerHook
from ferry.hooks.replication import ReplicationHook
from ferry.plan import load_plan
from stand.services.pgbouncer import PgBouncer


def through_the_pooler(stand) -> psycopg.Connection:
    return psycopg.connect(PgBouncer().dsn(stand), autocommit=True, prepare_threshold=None)


def test_a_pause_holds_the_apps_queries_and_none_fails(stand, source):
    pooler = PoolerHook(load_plan())
    done: dict[str, float] = {}
    try:
        with through_the_pooler(stand) as app:
            app.execute("SELECT 1")
            pooler.pause(5)
            assert pooler.entry()["paused"]

            def write() -> None:
                began = time.monotonic()
                app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/paused', now())")
                done["waited"] = time.monotonic() - began

            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(1.0)
            assert "waited" not in done  # held in the pooler
            pooler.resume()
            writer.join(10)
            assert done["waited"] >= 0.9
        assert source.execute("SELECT count(*) FROM page_views WHERE path = '/paused'").fetchone() == (1,)
    finally:
        PgBouncer().reset(stand)
        source.execute("DELETE FROM page_views WHERE path = '/paused'")


def test_a_transaction_held_open_makes_the_pause_give_up_and_resume(stand, source):
    pooler = PoolerHook(load_plan())
    try:
        with through_the_pooler(stand) as app:
            app.autocommit = False
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/held-open', now())")  # not committed
            with pytest.raises(PoolerError, match=r"did not finish within source.pooler.pause_timeout_s \(1 s\)"):
                pooler.pause(1)
            assert not pooler.entry()["paused"]  # resumed on the source: the application goes on
            app.commit()
        assert source.execute("SELECT count(*) FROM page_views WHERE path = '/held-open'").fetchone() == (1,)
    finally:
        PgBouncer().reset(stand)
        source.execute("DELETE FROM page_views WHERE path = '/held-open'")


def test_the_entry_is_repointed_over_ssh_and_back(stand, target):
    plan = load_plan()
    pooler = PoolerHook(plan)
    to = ReplicationHook("ferry_target", "saas").connection
    original = (stand.dir / "pgbouncer" / "pgbouncer.ini").read_text()
    try:
        pooler.repoint(to.host, to.port, "saas")
        assert {k: pooler.entry()[k] for k in ("host", "port", "dbname")} == {
            "host": to.host,
            "port": to.port,
            "dbname": "saas",
        }
        assert (
            f"saas = host={to.host} port={to.port} dbname=saas\n"
            in (stand.dir / "pgbouncer" / "pgbouncer.ini").read_text()
        )
        with through_the_pooler(stand) as app:  # the same login on the target
            assert app.execute("SELECT inet_server_port()").fetchone() == (to.port,)
    finally:
        PgBouncer().reset(stand)
    assert (stand.dir / "pgbouncer" / "pgbouncer.ini").read_text() == original


def test_a_repoint_read_ahead_never_overwrites_a_change_made_to_the_file_since(stand, target):
    """The cutover reads PgBouncer's file with its SSH connection before the pause (connect_vm): written ahead, the
    repoint writes only if the file is still what was read. Changed in between (a setting an operator added), it
    reads the file again: the change is kept, and the entry points at the target."""
    plan = load_plan()
    pooler = PoolerHook(plan)
    to = ReplicationHook("ferry_target", "saas").connection
    config = stand.dir / "pgbouncer" / "pgbouncer.ini"
    try:
        pooler.connect_vm()
        assert pooler._config_ahead == config.read_text()  # read over the connection opened ahead
        config.write_text(config.read_text().replace("[pgbouncer]\n", "[pgbouncer]\nstats_period = 61\n"))
        pooler.repoint(to.host, to.port, "saas")
        now = config.read_text()
        assert "stats_period = 61\n" in now and f"saas = host={to.host} port={to.port} dbname=saas\n" in now
        assert (pooler.entry()["host"], pooler.entry()["port"]) == (to.host, to.port)

        pooler.connect_vm()  # unchanged since read ahead: written as read
        source = ReplicationHook("ferry_source", "saas").connection
        pooler.repoint(source.host, source.port, "saas")
        assert f"saas = host={source.host} port={source.port} dbname=saas\n" in config.read_text()
        assert "stats_period = 61\n" in config.read_text()
    finally:
        pooler.close()
        PgBouncer().reset(stand)


def test_the_preflight_reaches_the_pooler_and_refuses_a_paused_one(stand):
    """check_connections: the admin console answers, the entry is in the file on the VM; a pooler left paused (a
    D-day stopped in its freeze without giving it back) fails, naming the fix."""
    from ferry.checks.connectivity import _ping

    plan = load_plan()
    pooler = PoolerHook(plan)
    said = _ping("pgbouncer", "old_pooler", plan)
    assert "PgBouncer: saas to 127.0.0.1:" in said and "not paused" in said and "on vm-1" in said
    try:
        pooler.pause(5)
        with pytest.raises(RuntimeError, match="is PAUSED.*ferry_rollback \\(restore_pooler resumes it\\)"):
            _ping("pgbouncer", "old_pooler", plan)
    finally:
        PgBouncer().reset(stand)
