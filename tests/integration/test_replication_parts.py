"""The parts of replication against the stand's two real clusters: fence, catch-up, comparison, drop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import psycopg
import pytest
from airflow.sdk import BaseHook

from ferry.compare import Comparer
from ferry.hooks.postgres import subscription_conninfo
from ferry.hooks.replication import FenceBlocked, ReplicationHook, fence_problems
from ferry.ledger import Ledger
from ferry.plan import load_plan
from ferry.triggers.replication import ReplicationCaughtUpTrigger
from stand.control import load
from tests.integration.conftest import app_connection, as_ferry, empty_public_schema, ferry_connection, run_dag

TEST_DAGS = Path(__file__).parent / "dags"
SCOPE = ["public.customers", "public.events", "public.invoices", "public.page_views", "public.subscriptions"]


@pytest.fixture
def hooks(stand):
    return ReplicationHook("ferry_source", "saas"), ReplicationHook("ferry_target", "saas")


@pytest.fixture
def replicating(stand, source, target, target_schema, hooks):
    """A live subscription of the plan's tables, its initial copy done; all of it dropped afterwards."""
    plan = load_plan()
    src, tgt = hooks
    conninfo = subscription_conninfo(BaseHook.get_connection("ferry_source"), "saas", plan.subscription)
    assert src.create_publication(plan.publication, SCOPE) == "created"
    assert tgt.create_subscription(plan.subscription, plan.publication, conninfo)
    deadline = time.monotonic() + 120
    while any(t["state"] != "r" for t in tgt.get_subscription_tables(plan.subscription)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    yield plan
    load(stand, "stop")
    src.remove_fence()
    tgt.drop_subscription(plan.subscription, publisher_reachable=False)
    src.drop_slot(plan.subscription)
    src.drop_publication(plan.publication)


def first_event(trigger: ReplicationCaughtUpTrigger, timeout: float = 60) -> tuple[dict, float]:
    async def run():
        async for event in trigger.run():
            return event.payload, time.monotonic()

    return asyncio.run(asyncio.wait_for(run(), timeout))


def caught_up_trigger(plan, fence_lsn: str, baseline: int = 0) -> ReplicationCaughtUpTrigger:
    return ReplicationCaughtUpTrigger(
        "ferry_source", "saas", "ferry_target", "saas", plan.subscription, fence_lsn, baseline_apply_errors=baseline
    )


# The write fence -----------------------------------------------------------------------------

BYPASSES = {
    "plain insert": ["INSERT INTO customers (email, name, country) VALUES ('x@example.com', 'X', 'DE')"],
    "BEGIN READ WRITE": [
        "BEGIN READ WRITE",
        "INSERT INTO customers (email, name, country) VALUES ('y@example.com', 'Y', 'DE')",
    ],
    "default_transaction_read_only off": [
        "SET default_transaction_read_only = off",
        "UPDATE subscriptions SET amount = amount + 1 WHERE id = 1",
    ],
    "session read write": ["SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "DELETE FROM events WHERE id = 1"],
    "identity insert": ["INSERT INTO invoices (subscription_id, amount, tax, issued_at) VALUES (1, 1, 0, now())"],
    "truncate": ["TRUNCATE page_views"],
}


def test_fence_refuses_every_write_by_the_application_and_unfence_restores_the_state(stand, source, hooks):
    src, _ = hooks
    catalog = (
        "SELECT (SELECT count(*) FROM pg_trigger), (SELECT count(*) FROM pg_proc), (SELECT count(*) FROM pg_namespace)"
    )
    before = source.execute(catalog).fetchone()
    counts = "SELECT (SELECT count(*) FROM customers), (SELECT sum(amount) FROM subscriptions), (SELECT count(*) FROM page_views)"
    rows_before = source.execute(counts).fetchone()
    open_session = app_connection(stand, "source")
    open_session.execute("BEGIN")
    open_session.execute("SELECT 1")
    try:
        src.install_fence(SCOPE, ["doadmin"])
        assert src.get_fenced_tables() == SCOPE
        with pytest.raises(psycopg.OperationalError):
            open_session.execute("SELECT 1")  # its session was ended
        for name, statements in BYPASSES.items():
            with app_connection(stand, "source") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                for statement in statements:
                    app.execute(statement)
                pytest.fail(f"{name}: the write went through")
        with app_connection(stand, "source") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with app.cursor().copy("COPY page_views (path, viewed_at) FROM STDIN") as copy:
                copy.write_row(("/copied", "2026-01-01"))
        with app_connection(stand, "source") as app:
            assert app.execute("SELECT count(*) FROM customers").fetchone()[0] == rows_before[0]  # reads still work
        assert source.execute(counts).fetchone() == rows_before
        # Ferry's own role is not fenced.
        with ferry_connection("source") as ferry:
            ferry.execute("UPDATE subscriptions SET amount = amount WHERE id = 1")
    finally:
        assert src.remove_fence() in ([], SCOPE)
    assert source.execute(catalog).fetchone() == before
    with app_connection(stand, "source") as app:
        app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/after-unfence', now())")
    source.execute("DELETE FROM page_views WHERE path = '/after-unfence'")


def test_the_fence_holds_every_writer_the_plan_does_not_list(stand, source, hooks):
    """saas_reports (a reporting tool, writing events through the group role saas_reporting) is in no
    list of the plan: the fence holds it all the same, and lets a role the plan keeps writing write."""
    src, _ = hooks
    writers = {w["role"]: w for w in src.get_writers(SCOPE)}
    assert writers["saas_reports"]["tables"] == ["public.events"]
    assert writers["saas_reports"]["via"] == ["grant to role saas_reporting"]
    assert writers["saas_app"]["via"] == ["grant"] and len(writers["saas_app"]["tables"]) == 5
    assert writers["postgres"]["superuser"] and writers["postgres"]["owner"] is False
    reports = {"user": "saas_reports", "password": stand.secret("reports_role")}
    insert = "INSERT INTO events (customer_id, kind, payload) VALUES (1, 'report.exported', '{}')"
    try:
        assert sorted(src.install_fence(SCOPE, ["doadmin"])) == ["saas_app", "saas_reports"]
        with (
            app_connection(stand, "source", **reports) as tool,
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as refused,
        ):
            tool.execute(insert)
        assert refused.value.sqlstate == "25006"
        src.remove_fence()
        src.install_fence(SCOPE, ["doadmin", "saas_reports"])  # the plan keeps it writing: source.keep_writing
        with app_connection(stand, "source", **reports) as tool:
            tool.execute(insert)
        with app_connection(stand, "source") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute(insert)
    finally:
        src.remove_fence()
        source.execute("DELETE FROM events WHERE kind = 'report.exported'")


def test_fence_refuses_a_role_it_cannot_hold(stand, source, hooks):
    src, _ = hooks
    source.execute("CREATE ROLE ferry_owners NOLOGIN")
    source.execute("CREATE ROLE ferry_owner_app LOGIN IN ROLE ferry_owners")
    source.execute("CREATE ROLE ferry_admin LOGIN SUPERUSER")
    source.execute("CREATE TABLE owned_by_app (id int PRIMARY KEY)")
    source.execute("ALTER TABLE owned_by_app OWNER TO ferry_owners")
    try:
        writers = src.get_writers([*SCOPE, "public.owned_by_app"])
        problems = fence_problems(writers, ["doadmin"], ["postgres"])
        assert src.missing_roles(["saas_app", "nobody"]) == ["nobody"]
    finally:
        source.execute("DROP TABLE owned_by_app")
        source.execute("DROP ROLE ferry_owner_app, ferry_owners, ferry_admin")
    assert len(problems) == 2, problems
    assert problems[0].startswith("role ferry_admin is a superuser: it can switch the fence off")
    assert "ALTER ROLE ferry_admin NOSUPERUSER" in problems[0]
    assert problems[1].startswith("role ferry_owner_app owns public.owned_by_app (owner through role ferry_owners)")
    assert "transfer ownership" in problems[1]
    assert fence_problems(writers, ["doadmin", "ferry_admin", "ferry_owner_app"], ["postgres"]) == []


def fence_waits_for_a_lock(source) -> bool:
    return (
        source.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ferry' AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        > 0
    )


def test_fence_deadlocking_with_an_application_transaction_rolls_back_and_tries_again(stand, source, hooks):
    src, _ = hooks
    app = app_connection(stand, "source")
    app.autocommit = False
    # The application's transaction writes events, then customers; the fence locks customers, then events.
    app.execute("INSERT INTO events (customer_id, kind, payload) VALUES (1, 'ferry-deadlock-test', '{}')")
    failure: list[BaseException] = []

    def fence():
        try:
            src.install_fence(SCOPE, ["doadmin"])
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            failure.append(err)

    fencing = threading.Thread(target=fence)
    fencing.start()
    try:
        deadline = time.monotonic() + 30
        while not fence_waits_for_a_lock(source):
            assert time.monotonic() < deadline, "the fence never waited for the application's lock on events"
            time.sleep(0.02)
        # Needs customers, which the fence holds: a deadlock. It completes only once the fence's
        # transaction has rolled back.
        app.execute("INSERT INTO customers (email, name, country) VALUES ('deadlock@example.com', 'D', 'DE')")
        app.commit()
        fencing.join(timeout=60)
        assert not fencing.is_alive()
        assert failure == []
        assert src.get_fenced_tables() == SCOPE
    finally:
        app.close()
        fencing.join(timeout=60)
        src.remove_fence()
        source.execute("DELETE FROM events WHERE kind = 'ferry-deadlock-test'")
        source.execute("DELETE FROM customers WHERE email = 'deadlock@example.com'")


def test_fence_blocked_past_its_attempts_fences_nothing_and_says_why(stand, source, hooks):
    src, _ = hooks
    app = app_connection(stand, "source")
    app.autocommit = False
    app.execute("UPDATE invoices SET tax = tax WHERE id = 1")
    try:
        with pytest.raises(FenceBlocked, match="after 2 attempts: a table stayed locked for over 200 ms"):
            src.install_fence(SCOPE, ["doadmin"], lock_timeout_ms=200, attempts=2)
        assert src.get_fenced_tables() == []
        app.commit()  # the application's session was not ended
    finally:
        app.close()
        src.remove_fence()


def test_unfence_waiting_on_a_reader_past_its_attempts_keeps_the_fence_and_says_why(stand, source, hooks):
    src, _ = hooks
    src.install_fence(SCOPE, ["doadmin"])
    reader = psycopg.connect(
        host=str(stand.dir / "pg" / "source"), port=stand.port(1), user="postgres", dbname="saas"
    )  # not an application role: the fence does not end its session
    try:
        reader.execute("SELECT count(*) FROM events").fetchone()  # holds its lock until the transaction ends
        with pytest.raises(FenceBlocked, match="the fence was not removed after 2 attempts: a table stayed locked"):
            src.remove_fence(lock_timeout_ms=200, attempts=2)
        assert src.get_fenced_tables() == SCOPE
        reader.rollback()
        assert src.remove_fence() == SCOPE
        assert src.get_fenced_tables() == []
    finally:
        reader.close()
        src.remove_fence()


# Catching up to the fence --------------------------------------------------------------------


def test_caught_up_fires_within_a_second_of_the_target_confirming_the_fence(stand, source, replicating, hooks):
    plan = replicating
    src, tgt = hooks
    load(stand, "start", rate=200)
    time.sleep(2)
    src.install_fence(SCOPE, ["doadmin"])
    fence_lsn = src.get_current_lsn()
    confirmed_at: list[float] = []

    def probe():
        with psycopg.connect(
            host=str(stand.dir / "pg" / "source"), port=stand.port(1), user="postgres", dbname="saas"
        ) as conn:
            while not confirmed_at:
                row = conn.execute(
                    "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
                    (fence_lsn, plan.subscription),
                ).fetchone()
                if row[0]:
                    confirmed_at.append(time.monotonic())
                time.sleep(0.01)

    watcher = threading.Thread(target=probe)
    watcher.start()
    event, fired_at = first_event(caught_up_trigger(plan, fence_lsn))
    watcher.join(timeout=30)
    assert event["status"] == "success", event
    assert confirmed_at, "the probe never saw the fence confirmed"
    assert fired_at - confirmed_at[0] < 1.0
    # Everything written before the fence is on the target.
    for table in ("customers", "events", "invoices"):
        assert source.execute(f"SELECT count(*), max(id) FROM {table}").fetchone() == tgt.get_first(
            f"SELECT count(*), max(id) FROM {table}"
        )


def test_caught_up_fails_at_once_when_the_subscription_is_disabled(source, target, replicating, hooks):
    plan = replicating
    src, _ = hooks
    target.execute(f"ALTER SUBSCRIPTION {plan.subscription} DISABLE")
    source.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/while-disabled', now())")
    started = time.monotonic()
    event, _ = first_event(caught_up_trigger(plan, src.get_current_lsn()), timeout=20)
    assert event["status"] == "error"
    assert f"subscription {plan.subscription} is disabled" in event["message"]
    assert time.monotonic() - started < 5
    source.execute("DELETE FROM page_views WHERE path = '/while-disabled'")


def test_caught_up_waits_for_an_enabled_subscriptions_apply_worker_to_start(source, target, replicating, hooks):
    """An apply worker that exits just after it started (ended here, as a crash or a dropped connection would)
    leaves its subscription enabled without a worker for a while (PostgreSQL's launcher waits
    wal_retrieve_retry_interval, 5 s, between starts; since 16 it starts one at once after ALTER SUBSCRIPTION
    ... ENABLE, so that alone leaves no gap): the wait goes on, and ends when it caught up."""
    plan = replicating
    src, tgt = hooks
    worker = f"SELECT pid FROM pg_stat_subscription WHERE subname = '{plan.subscription}' AND relid IS NULL"
    target.execute(f"ALTER SUBSCRIPTION {plan.subscription} DISABLE")
    while target.execute(worker).fetchone()[0]:
        time.sleep(0.05)
    target.execute(f"ALTER SUBSCRIPTION {plan.subscription} ENABLE")
    deadline = time.monotonic() + 30
    while not (pid := target.execute(worker).fetchone()[0]):
        assert time.monotonic() < deadline, "the apply worker did not start after ENABLE"
        time.sleep(0.05)
    target.execute("SELECT pg_terminate_backend(%s)", (pid,))
    while target.execute(worker).fetchone()[0]:
        time.sleep(0.05)
    source.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/while-restarting', now())")
    fence_lsn = src.get_current_lsn()
    assert tgt.get_subscription_status(plan.subscription)["worker_pid"] is None  # the launcher is waiting
    event, _ = first_event(caught_up_trigger(plan, fence_lsn), timeout=60)
    assert event["status"] == "success", event
    assert tgt.get_subscription_status(plan.subscription)["worker_pid"] is not None
    assert tgt.get_first("SELECT count(*) FROM page_views WHERE path = '/while-restarting'")[0] == 1
    source.execute("DELETE FROM page_views WHERE path = '/while-restarting'")


def test_caught_up_fails_at_once_on_an_apply_conflict(source, target, replicating, hooks):
    plan = replicating
    src, tgt = hooks
    baseline = tgt.get_subscription_status(plan.subscription)["apply_error_count"]
    target.execute(
        "INSERT INTO customers (id, email, name, country) VALUES (990001, 'conflict@example.com', 'T', 'DE')"
    )
    source.execute(
        "INSERT INTO customers (id, email, name, country) VALUES (990001, 'conflict@example.com', 'S', 'DE')"
    )
    event, _ = first_event(caught_up_trigger(plan, src.get_current_lsn(), baseline), timeout=30)
    assert event["status"] == "error"
    assert "apply" in event["message"] and "target's server log" in event["message"]
    target.execute("DELETE FROM customers WHERE id = 990001")
    source.execute("DELETE FROM customers WHERE id = 990001")


def test_trigger_serializes_to_its_arguments(replicating):
    trigger = caught_up_trigger(replicating, "0/1A2B3C", 3)
    path, kwargs = trigger.serialize()
    assert path == "ferry.triggers.replication.ReplicationCaughtUpTrigger"
    assert ReplicationCaughtUpTrigger(**kwargs).serialize() == (path, kwargs)


# Publication refresh and dropping the subscription -------------------------------------------


def test_a_table_added_to_the_publication_is_copied_after_a_refresh(source, target, replicating, hooks):
    plan = replicating
    src, tgt = hooks
    for side, conn in (("source", source), ("target", target)):
        with as_ferry(conn, side):
            conn.execute("CREATE TABLE coupons (code text PRIMARY KEY, percent int)")
    source.execute("INSERT INTO coupons SELECT 'C' || i, i FROM generate_series(1, 50) i")
    try:
        assert src.create_publication(plan.publication, [*SCOPE, "public.coupons"]) == "altered"
        assert src.create_publication(plan.publication, [*SCOPE, "public.coupons"]) == "unchanged"
        tgt.refresh_subscription(plan.subscription)
        deadline = time.monotonic() + 60
        while target.execute("SELECT count(*) FROM coupons").fetchone()[0] < 50:
            assert time.monotonic() < deadline, "the new table was not copied"
            time.sleep(0.2)
    finally:
        src.create_publication(plan.publication, SCOPE)
        tgt.refresh_subscription(plan.subscription)
        for conn in (source, target):
            conn.execute("DROP TABLE coupons")


def test_drop_subscription_while_the_source_is_down_then_drop_its_slot(stand, source, target, replicating, monkeypatch):
    plan = replicating
    live = __import__("os").environ["AIRFLOW_CONN_FERRY_SOURCE"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_FERRY_SOURCE", '{"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "postgres"}'
    )
    run = run_dag(TEST_DAGS, "ferry_test_drop_subscription")
    assert run.state == "success"
    assert target.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
    assert source.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 1  # left behind
    assert Ledger(plan).last("orphan_slot", f"source:{plan.subscription}") is not None

    monkeypatch.setenv("AIRFLOW_CONN_FERRY_SOURCE", live)
    assert run_dag(TEST_DAGS, "ferry_test_drop_orphan_slot").state == "success"
    assert source.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
    # A second run finds nothing left to drop and records nothing more.
    records = len(Ledger(plan).records())
    assert run_dag(TEST_DAGS, "ferry_test_drop_orphan_slot").state == "success"
    assert len(Ledger(plan).records()) == records


# Comparison: every kind of difference, by key --------------------------------------------------

COMPARE_SCHEMA = """
CREATE SCHEMA cmp;
CREATE TABLE cmp.wide (id bigint PRIMARY KEY, t text, n numeric(12, 4), ts timestamptz, j jsonb, b boolean,
                       f double precision, by bytea, iv interval, arr int[], un numeric, z real);
INSERT INTO cmp.wide SELECT i, 'text ' || i, i * 1.2345, timestamptz '2024-01-01 00:00+00' + i * interval '1 minute',
       jsonb_build_object('n', i, 'tags', jsonb_build_array('a', 'b')), i % 2 = 0, i / 3.0, int8send(i),
       CASE WHEN i = 1013 THEN interval '1 day' ELSE i * interval '1 second' END, ARRAY[i, i + 1], i * 0.1, 0
FROM generate_series(1, 5000) i;
CREATE TABLE cmp.composite (tenant int, code text, v text, PRIMARY KEY (tenant, code));
INSERT INTO cmp.composite SELECT i % 3, 'c' || lpad(i::text, 4, '0'), 'v' || i FROM generate_series(1, 3000) i;
CREATE TABLE cmp.textkey (k text PRIMARY KEY, v int);
INSERT INTO cmp.textkey SELECT 'k-' || lpad(i::text, 4, '0'), i FROM generate_series(1, 2000) i;
CREATE TABLE cmp.nokey (a int, b text);
INSERT INTO cmp.nokey SELECT i % 100, 'row ' || (i % 100) FROM generate_series(1, 1000) i;
"""

PLANTED = [
    "DELETE FROM cmp.wide WHERE id = 17",
    "INSERT INTO cmp.wide (id, t) VALUES (100001, 'only on the target')",
    "UPDATE cmp.wide SET t = t || '!' WHERE id = 1001",
    "UPDATE cmp.wide SET n = n + 0.0001 WHERE id = 1002",
    "UPDATE cmp.wide SET ts = ts + interval '1 microsecond' WHERE id = 1003",
    "UPDATE cmp.wide SET j = jsonb_set(j, '{n}', '0') WHERE id = 1004",
    "UPDATE cmp.wide SET b = NOT b WHERE id = 1005",
    "UPDATE cmp.wide SET f = f + 1e-12 WHERE id = 1006",
    "UPDATE cmp.wide SET by = '\\x00' WHERE id = 1007",
    "UPDATE cmp.wide SET iv = iv + interval '1 microsecond' WHERE id = 1008",
    "UPDATE cmp.wide SET arr = ARRAY[0] WHERE id = 1009",
    "UPDATE cmp.wide SET t = NULL WHERE id = 1010",
    "UPDATE cmp.wide SET un = 101.10 WHERE id = 1011",  # equal as numbers, different as shown
    "UPDATE cmp.wide SET z = '-0' WHERE id = 1012",  # equal as numbers, different as shown
    "UPDATE cmp.wide SET iv = interval '24 hours' WHERE id = 1013",  # equal as intervals, different as shown
    "UPDATE cmp.composite SET v = 'changed' WHERE tenant = 2 AND code = 'c0041'",
    "DELETE FROM cmp.composite WHERE tenant = 1 AND code = 'c0100'",
    "INSERT INTO cmp.textkey VALUES ('zzz-extra', 1)",
    "UPDATE cmp.textkey SET v = -1 WHERE k = 'k-0500'",
    "DELETE FROM cmp.nokey WHERE ctid = (SELECT min(ctid) FROM cmp.nokey WHERE a = 7)",
]


@pytest.fixture
def compare_tables(source, target):
    for side, conn in (("source", source), ("target", target)):
        with as_ferry(conn, side):
            conn.execute(COMPARE_SCHEMA)
    for statement in PLANTED:
        target.execute(statement)
    yield
    for conn in (source, target):
        conn.execute("DROP SCHEMA cmp CASCADE")


def test_comparison_names_every_planted_difference_by_key(compare_tables, hooks):
    comparer = Comparer(*hooks, concurrency=2, chunk_rows=700, leaf_rows=40)
    wide = comparer.compare_table("cmp.wide")
    assert not wide.equal
    assert wide.chunks > 2 and wide.ranges_compared > wide.chunks  # ranged, then bisected
    assert wide.missing_on_target == ["17"]
    assert wide.extra_on_target == ["100001"]
    assert sorted(wide.changed, key=int) == [str(i) for i in range(1001, 1014)]
    assert (wide.rows_source, wide.rows_target) == (5000, 5000)

    composite = comparer.compare_table("cmp.composite")
    assert composite.changed == ["(2,c0041)"]
    assert composite.missing_on_target == ["(1,c0100)"]

    text = comparer.compare_table("cmp.textkey")
    assert text.extra_on_target == ["zzz-extra"] and text.changed == ["k-0500"]

    nokey = comparer.compare_table("cmp.nokey")
    assert not nokey.keyed and not nokey.equal
    assert [(d["source"], d["target"]) for d in nokey.differing_rows] == [(10, 9)]


def test_ranges_follow_the_keys_order_and_values_that_look_different_differ(source, target, hooks):
    """Ranges of a composite or numeric key are cut in the key's order, not its text's (a key passing from
    two to three digits), or a case-insensitive collation's, so no row is counted twice; jsonb 1 and 1.0, 3
    and -3, and 'abc' and 'ABC' under a case-insensitive collation, are differences."""
    setup = """
        CREATE SCHEMA keys;
        CREATE COLLATION keys.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
        CREATE TABLE keys.pairs (a int, b int, note text, PRIMARY KEY (a, b));
        INSERT INTO keys.pairs SELECT i, j, 'n' || i FROM generate_series(1, 200) i, generate_series(1, 5) j;
        CREATE TABLE keys.amounts (amount numeric PRIMARY KEY, label text);
        INSERT INTO keys.amounts SELECT round(i / 4.0, 2), 'a' FROM generate_series(1, 1000) i;
        CREATE TABLE keys.docs (id int PRIMARY KEY, body jsonb, name text COLLATE keys.ci);
        INSERT INTO keys.docs VALUES (1, '{"n": 1}', 'abc'), (2, '{"n": 2}', 'def'), (3, '{"n": 3}', 'ghi');
        -- A text key under a case-insensitive collation: its order is not the bytes' ("B" after "a").
        CREATE TABLE keys.names (name text COLLATE keys.ci PRIMARY KEY, v int);
        INSERT INTO keys.names SELECT CASE WHEN i % 2 = 0 THEN 'a' ELSE 'B' END || lpad(i::text, 4, '0'), i
        FROM generate_series(1, 1000) i;
    """
    for side, conn in (("source", source), ("target", target)):
        with as_ferry(conn, side):
            conn.execute(setup)
    target.execute("UPDATE keys.pairs SET note = 'changed' WHERE (a, b) = (150, 3)")
    target.execute("UPDATE keys.amounts SET label = 'changed' WHERE amount = 100.25")
    target.execute("""UPDATE keys.docs SET body = '{"n": 1.0}' WHERE id = 1""")
    target.execute("UPDATE keys.docs SET name = 'DEF' WHERE id = 2")
    target.execute("UPDATE keys.names SET v = -1 WHERE name = 'B0777'")
    # PostgreSQL's own numeric and jsonb hashes ignore a number's sign (and scale): Ferry must not.
    target.execute("""UPDATE keys.docs SET body = '{"n": -3}' WHERE id = 3""")
    try:
        comparer = Comparer(*hooks, concurrency=2, chunk_rows=100, leaf_rows=20)
        pairs = comparer.compare_table("keys.pairs")
        assert pairs.chunks == 10 and (pairs.rows_source, pairs.rows_target) == (1000, 1000)
        assert pairs.changed == ["(150,3)"] and not pairs.missing_on_target and not pairs.extra_on_target
        amounts = comparer.compare_table("keys.amounts")
        assert amounts.chunks == 10 and (amounts.rows_source, amounts.rows_target) == (1000, 1000)
        assert amounts.changed == ["100.25"]
        names = comparer.compare_table("keys.names")
        assert names.chunks == 10 and (names.rows_source, names.rows_target) == (1000, 1000)
        assert names.changed == ["B0777"] and not names.missing_on_target and not names.extra_on_target
        docs = comparer.compare_table("keys.docs")
        assert sorted(docs.changed) == ["1", "2", "3"]
    finally:
        for conn in (source, target):
            conn.execute("DROP SCHEMA keys CASCADE")


def test_counts_mode_sees_missing_and_extra_rows_only(compare_tables, hooks):
    comparer = Comparer(*hooks, concurrency=2, chunk_rows=700, leaf_rows=40)
    wide = comparer.compare_table("cmp.wide", mode="counts")
    assert wide.missing_on_target == ["17"] and wide.extra_on_target == ["100001"] and wide.changed == []


def test_a_large_tables_live_comparison_says_its_progress_and_finds_what_one_pass_finds(compare_tables, hooks):
    """Past ``progress_min_rows``, a table with an integer key is compared live in ten passes over consecutive key
    ranges, each followed by a progress call (rows so far, the estimate, seconds); what it finds is what the one pass
    finds: the same rows, the same ranges carried into the freeze."""
    said = []
    stepwise = Comparer(
        *hooks, concurrency=2, chunk_rows=250, leaf_rows=40, progress=lambda *a: said.append(a), progress_min_rows=1000
    )
    whole = Comparer(*hooks, concurrency=2, chunk_rows=250, leaf_rows=40)
    ten = stepwise.compare_live("cmp.wide", retries=0, wait_s=0)
    one = whole.compare_live("cmp.wide", retries=0, wait_s=0)
    assert len(said) == 10 and {table for table, *_ in said} == {"cmp.wide"}
    rows = [done for _, done, _, _ in said]
    assert rows == sorted(rows) and rows[-1] == 5000 and said[-1][2] > 0, said  # the last: every row, an estimate
    assert [s for *_, s in said] == sorted(s for *_, s in said)
    assert (
        (ten.rows_source, ten.rows_target, ten.chunks)
        == (one.rows_source, one.rows_target, one.chunks)
        == (
            5000,
            5000,
            20,
        )
    )
    assert ten.carried == one.carried and ten.carried  # the planted differences, carried into the freeze


def test_identical_tables_compare_equal(stand, source, target):
    for side, conn in (("source", source), ("target", target)):
        with as_ferry(conn, side):
            conn.execute(COMPARE_SCHEMA)
    try:
        comparer = Comparer(
            ReplicationHook("ferry_source", "saas"), ReplicationHook("ferry_target", "saas"), chunk_rows=700
        )
        for table in ("cmp.wide", "cmp.composite", "cmp.textkey", "cmp.nokey"):
            result = comparer.compare_table(table)
            assert result.equal and result.differences == 0, table
            assert result.rows_source == result.rows_target > 0
            assert result.ranges_compared == 1, table  # equal: one scan of the whole table per side, no range
    finally:
        for conn in (source, target):
            conn.execute("DROP SCHEMA cmp CASCADE")


# Schema copy -----------------------------------------------------------------------------------


def test_schema_copy_refuses_a_target_holding_rows_and_a_rerun_changes_nothing(stand, source, target, capfd):
    try:
        # A target whose customers table already holds a row: refused, naming it.
        with as_ferry(target, "target"):
            target.execute("CREATE TABLE customers (id bigint PRIMARY KEY)")
            target.execute("INSERT INTO customers VALUES (1)")
        capfd.readouterr()
        run = run_dag(TEST_DAGS, "ferry_test_copy_schema")
        assert run.state == "failed"
        assert "target tables already hold rows: public.customers" in "".join(capfd.readouterr())
        target.execute("DROP TABLE customers")

        # An empty target: copied, with grants, in one transaction; recorded.
        assert run_dag(TEST_DAGS, "ferry_test_copy_schema").state == "success"
        tables = target.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
        assert tables == 10  # the 7 tables in scope and usage_records' 3 partitions
        assert target.execute("SELECT has_table_privilege('saas_app', 'public.invoices', 'INSERT')").fetchone()[0]
        records = Ledger(load_plan()).records(action="copy_schema")

        # Rows arrive (as replication would bring them); a re-run changes nothing and records nothing.
        target.execute("INSERT INTO customers (email, name, country) VALUES ('r@example.com', 'R', 'DE')")
        assert run_dag(TEST_DAGS, "ferry_test_copy_schema").state == "success"
        assert Ledger(load_plan()).records(action="copy_schema") == records
    finally:
        empty_public_schema(target)


# What logical replication does not carry ------------------------------------------------------


def test_what_replication_does_not_carry_is_named_and_partitions_may_differ(
    stand, source, target, target_schema, hooks
):
    """The target partitions usage_records otherwise (one default partition): published through the root,
    its rows still arrive. An unlogged table and a table the publication lacks are named with the fix;
    large objects, the materialized view and the partitioned table with what D-day does about them."""
    from ferry.preflight import check_not_replicated

    plan = load_plan()
    src, tgt = hooks
    scope = [t["qualified"] for t in src.get_tables(["public"])]
    with as_ferry(target, "target"):
        target.execute("DROP TABLE usage_records_2025, usage_records_2026, usage_records_later")
        target.execute("CREATE TABLE usage_records_all PARTITION OF usage_records DEFAULT")
    conninfo = subscription_conninfo(BaseHook.get_connection("ferry_source"), "saas", plan.subscription)
    assert src.create_publication(plan.publication, scope) == "created"
    assert src.publishes_via_root(plan.publication)
    try:
        assert tgt.create_subscription(plan.subscription, plan.publication, conninfo)
        deadline = time.monotonic() + 120
        while any(t["state"] != "r" for t in tgt.get_subscription_tables(plan.subscription)):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        source.execute("INSERT INTO usage_records VALUES (1, '2025-03-01 10:00+00', 7), (2, '2026-05-01 10:00+00', 9)")
        deadline = time.monotonic() + 30
        count = "SELECT count(*), sum(units) FROM usage_records"
        while target.execute(count).fetchone() != source.execute(count).fetchone():
            assert time.monotonic() < deadline, "rows published through the root did not arrive"
            time.sleep(0.2)
        assert Comparer(*hooks).compare_table("public.usage_records").equal
        assert (
            target.execute("SELECT count(*) FROM usage_records_all").fetchone()
            == source.execute("SELECT count(*) FROM usage_records").fetchone()
        )

        found = check_not_replicated(plan)
        assert found.status == "pass", found
        documents = source.execute("SELECT count(*) FROM documents").fetchone()[0]
        assert any(f.startswith(f"{documents} large object(s) (oids ") for f in found.findings)
        assert "public.customer_revenue: materialized view; D-day refreshes it on the target after the cutover" in (
            found.findings
        )
        assert any(
            f.startswith(
                "public.usage_records: partitioned, 3 partition(s); the target has other partitions (1 against 3)"
            )
            for f in found.findings
        )

        source.execute("CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)")
        source.execute("CREATE TABLE coupons (code text PRIMARY KEY)")
        try:
            found = check_not_replicated(plan)
        finally:
            source.execute("DROP TABLE scratch, coupons")
        assert found.status == "fail"
        assert "public.scratch: unlogged; fix: ALTER TABLE public.scratch SET LOGGED (or exclude it in the plan)" in (
            found.findings
        )
        assert any(f.startswith("public.coupons: not published") and "ferry_week_prior" in f for f in found.findings)
    finally:
        tgt.drop_subscription(plan.subscription, publisher_reachable=False)
        src.drop_slot(plan.subscription)
        src.drop_publication(plan.publication)


def test_the_sequence_safety_check_covers_columns_fed_by_a_sequence_no_column_owns(stand, source, hooks):
    """An integer column whose default calls nextval() on a sequence owned by no column is checked against its
    sequence at the cutover, as a serial or identity column is."""
    src, _ = hooks
    with as_ferry(source, "source"):
        source.execute("CREATE SEQUENCE ticket_number_seq")
        source.execute(
            "CREATE TABLE tickets (id bigint PRIMARY KEY, number bigint DEFAULT nextval('ticket_number_seq'))"
        )
    try:
        columns = src.get_sequence_columns(["public"])
        assert {"table": "public.tickets", "column": "number", "sequence": "public.ticket_number_seq"} in columns
        assert {"table": "public.customers", "column": "id", "sequence": "public.customers_id_seq"} in columns
    finally:
        source.execute("DROP TABLE tickets")
        source.execute("DROP SEQUENCE ticket_number_seq")


def test_the_rehearsals_account_of_lost_rows_counts_a_table_the_target_never_got(stand, source, target_schema):
    """A stage failed before D-day's scope step brought a new table in: the rehearsal's summary counts that
    table's rows as lost rather than crashing on its absence from the target."""
    from rehearsal import lost_rows

    with as_ferry(source, "source"):  # the application's migration, as doadmin
        source.execute("CREATE TABLE late_table (id int PRIMARY KEY)")
    source.execute("INSERT INTO late_table SELECT generate_series(1, 3)")
    try:
        assert lost_rows()["public.late_table"] == 3
    finally:
        source.execute("DROP TABLE late_table")


def test_the_targets_fence_holds_partitions_and_refuses_a_role_the_plan_names_that_does_not_exist(
    stand, source, target, target_schema, mistaken_plan, capfd
):
    """The way back fences the target as D-day fences the source: every partition of a table in scope too (a
    statement trigger on the root does not fire for a write aimed at a partition), and a role of
    target.app_roles that does not exist stops it, changing nothing."""
    with as_ferry(target, "target"):
        target.execute("CREATE TABLE metrics (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
        target.execute(
            "CREATE TABLE metrics_2025 PARTITION OF metrics FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
        )
        target.execute("GRANT INSERT ON metrics, metrics_2025 TO saas_app")
    try:
        mistaken_plan(lambda d: d["target"].update(app_roles=["saas_app", "saas_nobody"]))
        capfd.readouterr()
        refused = run_dag(TEST_DAGS, "ferry_test_fence_target")
        assert refused.state == "failed"
        assert "role saas_nobody (target.app_roles) does not exist on the target" in "".join(capfd.readouterr())
        assert target.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'ferry_fence'").fetchone() == (0,)

        mistaken_plan(lambda d: d["target"].update(app_roles=["saas_app"]))
        assert run_dag(TEST_DAGS, "ferry_test_fence_target").state == "success"
        with app_connection(stand, "target") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute("INSERT INTO metrics_2025 VALUES (1, '2025-06-01')")
    finally:
        ReplicationHook("ferry_target", "saas").remove_fence()
        target.execute("DROP TABLE metrics")


def test_the_schema_watch_carries_the_sources_migrations_and_the_apply_resumes(
    stand, source, target, replicating, hooks, monkeypatch, tmp_path, capfd
):
    """The application's migrations run on the source while the replication runs: a column added with a default
    and written (the subscription's apply stops at that row: the target lacks the column), an index, a numeric
    widened. With replication.ddl: refuse, ferry_schema_watch fails naming each, changing nothing; with carry, it
    makes the target match (in the ledger), the apply resumes by itself and the row arrives. Then the column is
    renamed, then dropped, on the source: each carried the same way, the schemas equal at the end."""
    import yaml

    from ferry.ledger import Action
    from ferry.plan import plan_source
    from ferry.preflight import check_schema_drift

    plan = replicating
    _, tgt = hooks
    root_dags = Path(__file__).parents[2] / "dags"
    carry_plan = plan_source()

    def apply_errors() -> int:
        return tgt.get_subscription_status(plan.subscription)["apply_error_count"]

    def watch() -> tuple[str, str]:
        capfd.readouterr()
        run = run_dag(root_dags, "ferry_schema_watch")
        return run.state, "".join(capfd.readouterr())

    def arrived(where: str) -> bool:
        return target.execute(f"SELECT count(*) FROM customers WHERE {where}").fetchone()[0] == 1

    try:
        errors = apply_errors()
        with as_ferry(source, "source"):  # the application's migration, run as doadmin
            source.execute("ALTER TABLE customers ADD COLUMN note text NOT NULL DEFAULT 'none'")
            source.execute("CREATE INDEX customers_created_at_idx ON customers (created_at)")
            source.execute("ALTER TABLE invoices ALTER COLUMN tax TYPE numeric(14, 4)")
        source.execute(
            "INSERT INTO customers (email, name, country, note) VALUES ('ddl@example.com', 'D', 'FR', 'carried')"
        )
        deadline = time.monotonic() + 60
        while apply_errors() == errors:  # the apply stops at the row: the target lacks the column
            assert time.monotonic() < deadline, "the subscription's apply did not stop on the missing column"
            time.sleep(0.5)
        assert not arrived("email = 'ddl@example.com'")

        refusing = yaml.safe_load(Path(carry_plan).read_text())
        refusing["replication"]["ddl"] = "refuse"
        (tmp_path / "refuse.yaml").write_text(yaml.safe_dump(refusing))
        monkeypatch.setenv("FERRY_PLAN", str(tmp_path / "refuse.yaml"))
        state, said = watch()
        assert state == "failed"
        assert "replication.ddl: refuse" in said
        assert (
            "public.customers.note (text): missing on the target; on the target: ALTER TABLE public.customers ADD "
            "COLUMN note text DEFAULT 'none'::text NOT NULL" in said
        )
        assert not target.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname = 'note'"
        ).fetchone()[0]

        monkeypatch.setenv("FERRY_PLAN", carry_plan)
        before = len(Ledger(plan).records(action=Action.CARRY_SCHEMA_CHANGE))
        state, said = watch()
        assert state == "success", said[-3000:]
        assert "Carried to the target: public.customers.note (text): missing on the target" in said
        assert "Carried to the target: public.customers: index customers_created_at_idx missing on the target" in said
        assert "Carried to the target: public.invoices.tax: numeric(14,4) on the source, numeric(12,4)" in said
        assert len(Ledger(plan).records(action=Action.CARRY_SCHEMA_CHANGE)) == before + 3
        deadline = time.monotonic() + 60
        while not arrived("email = 'ddl@example.com' AND note = 'carried'"):  # the apply resumed by itself
            assert time.monotonic() < deadline, "the row did not arrive once the column was carried"
            time.sleep(0.5)
        assert check_schema_drift(plan).status == "pass"

        with as_ferry(source, "source"):
            source.execute("ALTER TABLE customers RENAME COLUMN note TO remark")
        source.execute(
            "INSERT INTO customers (email, name, country, remark) VALUES ('ddl2@example.com', 'E', 'FR', 'renamed')"
        )
        state, said = watch()
        assert state == "success" and "renamed on the source from note" in said, said[-3000:]
        deadline = time.monotonic() + 60
        while not arrived("email = 'ddl2@example.com' AND remark = 'renamed'"):
            assert time.monotonic() < deadline, "the row did not arrive once the rename was carried"
            time.sleep(0.5)

        with as_ferry(source, "source"):
            source.execute("ALTER TABLE customers DROP COLUMN remark")
        state, said = watch()
        assert state == "success" and "public.customers.remark: only on the target" in said, said[-3000:]
        assert check_schema_drift(plan).status == "pass"
        state, said = watch()  # nothing left to carry: a re-run changes nothing
        assert state == "success" and "are equal" in said
        assert len(Ledger(plan).records(action=Action.CARRY_SCHEMA_CHANGE)) == before + 5
    finally:
        with as_ferry(source, "source"):
            source.execute("ALTER TABLE customers DROP COLUMN IF EXISTS note")
            source.execute("ALTER TABLE customers DROP COLUMN IF EXISTS remark")
            source.execute("DROP INDEX IF EXISTS customers_created_at_idx")
            source.execute("ALTER TABLE invoices ALTER COLUMN tax TYPE numeric(12, 4)")
        source.execute("DELETE FROM customers WHERE email IN ('ddl@example.com', 'ddl2@example.com')")


def test_the_schema_watch_brings_new_tables_and_a_partition_whose_rows_went_to_the_default(
    stand, source, target, replicating, hooks, capfd
):
    """A release during the window: a table created on the source and written, next year's partition added (the
    target's default partition takes its first row meanwhile: PostgreSQL would refuse to create the partition
    there), a column added and written (the apply stops). The day-before pre-flight names the column as the
    apply's cause, with its statement. ferry_schema_watch carries the column, creates the partition moving the
    row out of the default, creates, publishes and subscribes the new table (in the ledger): every row arrives."""
    from ferry.ledger import Action
    from ferry.plan import in_scope
    from ferry.preflight import check_replication_health, check_schema_drift

    plan = replicating
    src, tgt = hooks
    root_dags = Path(__file__).parents[2] / "dags"
    # The whole scope replicating, as after ferry_week_prior (the fixture publishes part of it).
    src.create_publication(plan.publication, [t["qualified"] for t in in_scope(plan, src.get_tables(["public"]))])
    tgt.refresh_subscription(plan.subscription)

    def count(conn: psycopg.Connection, query: str) -> int:
        return conn.execute(query).fetchone()[0]

    def wait_for(what: str, done) -> None:
        deadline = time.monotonic() + 90
        while not done():
            assert time.monotonic() < deadline, what
            time.sleep(0.5)

    wait_for("the initial copy", lambda: all(t["state"] == "r" for t in tgt.get_subscription_tables(plan.subscription)))
    in_2028 = "SELECT count(*) FROM {} WHERE recorded_at >= '2028-01-01 00:00+00'"
    try:
        with as_ferry(source, "source"):
            source.execute(
                "CREATE TABLE usage_records_2028 PARTITION OF usage_records "
                "FOR VALUES FROM ('2028-01-01 00:00+00') TO ('2029-01-01 00:00+00')"
            )
            source.execute("CREATE TABLE coupons (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE)")
            source.execute("INSERT INTO coupons (code) SELECT 'C' || i FROM generate_series(1, 50) i")
        source.execute("INSERT INTO usage_records VALUES (1, '2028-03-01 00:00+00', 7)")
        wait_for("the 2028 row in the target's default", lambda: count(target, in_2028.format("usage_records_later")))
        with as_ferry(source, "source"):
            source.execute("ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'free'")
        source.execute("INSERT INTO customers (email, name, country, tier) VALUES ('t@example.com', 'T', 'FR', 'gold')")
        errors = tgt.get_subscription_status(plan.subscription)["apply_error_count"]
        wait_for(
            "the apply stopping", lambda: tgt.get_subscription_status(plan.subscription)["apply_error_count"] > errors
        )

        health = check_replication_health(plan)
        assert health.status == "fail"
        assert "apply stops at rows the target's schema cannot take: public.customers.tier (text): missing" in (
            health.summary
        )
        assert (
            "cause: public.customers.tier (text): missing on the target; on the target: ALTER TABLE public.customers "
            "ADD COLUMN tier text DEFAULT 'free'::text NOT NULL" in health.findings
        )
        assert "ferry_schema_watch" in health.remedy
        # D-day's catch-up, stopped by the same apply errors, names the same cause.
        from airflow.sdk.exceptions import AirflowFailException

        from ferry.sensors.replication import ReplicationCaughtUpSensor

        failed = {"status": "failed", "message": f"subscription {plan.subscription} hit 2 new apply error(s)"}
        with pytest.raises(AirflowFailException) as stopped:
            ReplicationCaughtUpSensor(task_id="wait_caught_up").execute_complete({}, failed)
        assert (
            "the target's apply stops at the first row that needs: public.customers.tier (text): missing on the target"
            in str(stopped.value)
        )

        copies = len(Ledger(plan).records(action=Action.COPY_SCHEMA))
        capfd.readouterr()
        run = run_dag(root_dags, "ferry_schema_watch")
        said = "".join(capfd.readouterr())
        assert run.state == "success", said[-3000:]
        assert "Carried to the target: public.customers.tier (text): missing on the target" in said
        assert "its rows go to the default partition public.usage_records_later there meanwhile" in said
        assert "Copied the schema of 1 table(s) to the target (added to the source since: public.coupons)" in said
        assert len(Ledger(plan).records(action=Action.COPY_SCHEMA)) == copies + 1
        assert count(target, in_2028.format("usage_records_2028")) == 1  # moved out of the default, not lost
        assert count(target, in_2028.format("usage_records_later")) == 0
        wait_for("the new table's rows", lambda: count(target, "SELECT count(*) FROM coupons") == 50)
        wait_for(
            "the row that stopped the apply",
            lambda: count(target, "SELECT count(*) FROM customers WHERE tier = 'gold'"),
        )
        assert check_schema_drift(plan).status == "pass"
        src_rows, tgt_rows = (count(c, "SELECT count(*) FROM usage_records") for c in (source, target))
        assert src_rows == tgt_rows
    finally:
        with as_ferry(source, "source"):
            source.execute("DROP TABLE IF EXISTS coupons")
            source.execute("DROP TABLE IF EXISTS usage_records_2028")
            source.execute("ALTER TABLE customers DROP COLUMN IF EXISTS tier")
        source.execute("DELETE FROM customers WHERE email = 't@example.com'")


def test_a_running_copy_is_seen_with_its_rows_bytes_and_how_long_it_has_run(stand, target_schema):
    """What the initial copy's progress lines read (``copy_progress.sql`` as Ferry's login): a COPY into a table of
    the target, still running, with its rows and bytes so far and the time its transaction has run."""
    from ferry.progress import copy_line

    hook = ReplicationHook("ferry_target", "saas")
    with ferry_connection("target") as conn:
        conn.autocommit = False
        with conn.cursor().copy("COPY page_views (path, viewed_at) FROM STDIN") as copy:
            for i in range(20_000):
                copy.write_row((f"/progress/{i}", "2026-01-01 00:00+00"))
            time.sleep(1.5)
            running = [r for r in hook.fetch("copy_progress") if r["qualified"] == "public.page_views"]
        conn.rollback()
    assert len(running) == 1, running
    row = running[0]
    assert row["rows_done"] > 0 and row["bytes_done"] > 0 and row["elapsed_s"] >= 1.0, row
    line = copy_line("public.page_views", row["rows_done"], 20_000, row["bytes_done"], 10**6, row["elapsed_s"])
    assert "rows/s; ETA" in line
