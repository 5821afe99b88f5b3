"""ferry_preflight against the stand: GO when healthy, NO-GO naming the problem when not."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from ferry.plan import load_plan
from ferry.preflight import check_connections, check_writers


def run_preflight(dag_folder: Path):
    """Run ferry_preflight once with dag.test(); return the run's state, task states and its report."""
    dag = DagBag(dag_folder=str(dag_folder)).dags["ferry_preflight"]
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    reports = sorted(Path(_report_dir()).rglob(f"*{run.run_id.replace(':', '_').replace('+', '_')}*.md"))
    assert len(reports) == 1, f"expected one report for {run.run_id}, found {reports}"
    return run.state, states, reports[0].read_text()


def _report_dir() -> str:
    import os

    return os.environ["FERRY_REPORT_DIR"]


def test_healthy_stand_is_go(stand, dag_folder):
    state, tasks, report = run_preflight(dag_folder)
    assert state == "success"
    assert report.startswith("# Ferry pre-flight: GO\n")
    assert tasks["check_replica_identity"] == "success"
    assert "| connections | PASS | all 9 connections answer |" in report
    assert "public.invoice_number_seq (sequence, owned by no column)" in report
    assert (
        "| writers | PASS | the fence holds every role that can write a table in scope: saas_app, saas_reports |"
        in report
    )

    from tests.integration.conftest import rerun_each_task

    rerun = rerun_each_task(dag_folder, "ferry_preflight")  # cleared and run again: same results, nothing changed
    assert set(rerun) == set(tasks) and set(rerun.values()) == {"success"}


def test_table_without_key_or_replica_identity_is_no_go_naming_it(stand, source, dag_folder):
    source.execute("CREATE TABLE legacy_audit (who text, what text)")
    try:
        state, tasks, report = run_preflight(dag_folder)
    finally:
        source.execute("DROP TABLE legacy_audit")
    assert state == "failed"
    assert tasks["check_replica_identity"] == "failed"
    assert tasks["go_no_go_report"] == "failed"
    assert tasks["check_connections"] == "success"
    assert report.startswith("# Ferry pre-flight: NO-GO\n")
    assert "1 table(s) cannot be replicated: public.legacy_audit" in report
    assert "ALTER TABLE public.legacy_audit ADD PRIMARY KEY" in report
    assert "ALTER TABLE public.legacy_audit REPLICA IDENTITY FULL" in report


def test_a_table_with_a_unique_index_on_not_null_columns_is_told_to_use_it_as_replica_identity(stand, source):
    from ferry.preflight import check_replica_identity

    source.execute("CREATE TABLE legacy_audit (who text NOT NULL, seq int NOT NULL, what text)")
    source.execute("CREATE UNIQUE INDEX legacy_audit_who_seq ON legacy_audit (who, seq)")
    try:
        found = check_replica_identity(load_plan())
    finally:
        source.execute("DROP TABLE legacy_audit")
    assert found.status == "fail"
    assert any(
        "ALTER TABLE public.legacy_audit REPLICA IDENTITY USING INDEX legacy_audit_who_seq;" in f
        for f in found.findings
    ), found.findings


def test_schema_drift_is_named_by_column_once_the_target_has_a_schema(stand, target, target_schema, dag_folder):
    state, tasks, report = run_preflight(dag_folder)
    assert state == "success", report
    assert "| schema_drift | PASS | 7 tables match on source and target |" in report

    target.execute("ALTER TABLE invoices ALTER COLUMN tax TYPE numeric(14, 4)")
    target.execute("ALTER TABLE events DROP COLUMN payload")
    state, tasks, report = run_preflight(dag_folder)
    assert state == "failed"
    assert tasks["check_schema_drift"] == "failed"
    assert "public.invoices.tax: numeric(12,4) on the source, numeric(14,4) on the target" in report
    assert "public.events.payload (jsonb): missing on the target" in report


def test_replication_health_of_a_live_subscription(stand, source, target, target_schema, dag_folder):
    plan = load_plan()
    conninfo = (
        f"host=127.0.0.1 port={stand.port(1)} dbname=saas user=postgres password={stand.secret('source_superuser')}"
    )
    source.execute(f"CREATE PUBLICATION {plan.publication} FOR ALL TABLES")
    target.execute(f"CREATE SUBSCRIPTION {plan.subscription} CONNECTION '{conninfo}' PUBLICATION {plan.publication}")
    try:
        deadline = time.monotonic() + 120
        while target.execute("SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'").fetchone()[0]:
            assert time.monotonic() < deadline, "initial copy did not finish"
            time.sleep(0.2)
        state, tasks, report = run_preflight(dag_folder)
        assert state == "success", report
        assert "| replication_health | PASS | replication is streaming |" in report
        assert "slot on the source: active=True, wal_status=reserved" in report
        assert "Ferry's slot ferry_stand_saas: exists" in report

        target.execute(f"ALTER SUBSCRIPTION {plan.subscription} DISABLE")
        state, tasks, report = run_preflight(dag_folder)
        assert state == "failed"
        assert tasks["check_replication_health"] == "failed"
        assert f"subscription {plan.subscription} is disabled on the target" in report
        assert f"ALTER SUBSCRIPTION {plan.subscription} ENABLE" in report
    finally:
        target.execute(f"ALTER SUBSCRIPTION {plan.subscription} DISABLE")
        target.execute(f"ALTER SUBSCRIPTION {plan.subscription} SET (slot_name = NONE)")
        target.execute(f"DROP SUBSCRIPTION {plan.subscription}")
        source.execute(f"SELECT pg_drop_replication_slot('{plan.subscription}')")
        source.execute(f"DROP PUBLICATION {plan.publication}")


def test_unreachable_connection_is_named(stand, monkeypatch):
    plan = load_plan()
    monkeypatch.setenv(
        "AIRFLOW_CONN_FERRY_TARGET",
        '{"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "postgres", "schema": "saas"}',
    )
    result = check_connections(plan)
    assert result.status == "fail"
    assert result.summary == "1 of 9 connections do not answer: ferry_target"
    assert any(f.startswith("ferry_target (postgres): UNREACHABLE") for f in result.findings)


def test_no_secret_in_logs_report_or_xcom(stand, stand_secrets, source, dag_folder, capfd):
    source.execute("CREATE TABLE legacy_secrets (x text)")  # a failing check too: its messages are checked as well
    try:
        _, _, report = run_preflight(dag_folder)
    finally:
        source.execute("DROP TABLE legacy_secrets")
    out, err = capfd.readouterr()
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = " ".join(str(x.value) for x in session.query(XComModel).all())
    # What is scanned holds the run's output, including the failed check's.
    assert "public.legacy_secrets" in report
    assert "public.legacy_secrets" in out + err
    assert "public.legacy_secrets" in xcoms
    for secret in stand_secrets:
        assert secret not in out + err
        assert secret not in report
        assert secret not in xcoms


def test_every_writer_is_listed_with_where_its_right_comes_from(stand, source, mistaken_plan):
    found = check_writers(load_plan())
    assert found.status == "pass", found
    assert (
        "saas_reports: can write 1 table(s) in scope (grant to role saas_reporting); held by the fence "
        "(not in source.app_roles)" in found.findings
    )
    assert "saas_app: can write 10 table(s) in scope (grant); held by the fence" in found.findings
    assert "doadmin: can write 10 table(s) in scope (owner); Ferry's own role: not fenced" in found.findings
    assert (
        "postgres: can write 10 table(s) in scope (superuser); the managed service's own superuser "
        "(source.provider_superusers): no client of yours logs in as it" in found.findings
    )

    mistaken_plan(lambda d: d["source"].update(keep_writing=["saas_reports"]))
    kept = check_writers(load_plan())
    assert kept.status == "warn" and kept.summary.startswith("saas_reports keep writing after the fence")
    assert "is lost to the new one" in kept.remedy

    source.execute("CREATE ROLE ferry_cron LOGIN")
    source.execute("GRANT INSERT ON page_views TO PUBLIC")
    source.execute("ALTER TABLE page_views OWNER TO ferry_cron")
    try:
        held = check_writers(load_plan())
    finally:
        source.execute("ALTER TABLE page_views OWNER TO doadmin")  # its owner, as the stand made it
        source.execute("REVOKE INSERT ON page_views FROM PUBLIC")
        source.execute("DROP ROLE ferry_cron")
    assert held.status == "fail"
    assert any("grant to PUBLIC" in f for f in held.findings if f.startswith("saas_reports:"))
    assert any(f.startswith("role ferry_cron owns public.page_views (owner)") for f in held.findings), held.findings


def test_ferrys_own_login_in_the_plans_roles_is_refused_and_its_other_sessions_are_named(stand, source, mistaken_plan):
    """Ferry's login passes the fence: a plan naming it among the application's roles fails the pre-flight, and a
    client sharing it (a session of that login that is not Ferry's) is named with its pid and address."""
    import psycopg

    from tests.integration.conftest import ferry_connection

    login = source.execute("SELECT rolname FROM pg_roles WHERE rolname = 'doadmin'").fetchone()[0]
    mistaken_plan(lambda d: d["source"]["app_roles"].append(login))
    refused = check_writers(load_plan())
    assert refused.status == "fail"
    assert any(f.startswith(f"{login} is Ferry's own login (connection ferry_source)") for f in refused.findings)

    mistaken_plan(lambda d: d)
    cron = ferry_connection("source")
    cron.execute("SET application_name = 'nightly-export'")
    try:
        (pid,) = cron.execute("SELECT pg_backend_pid()").fetchone()
        shared = check_writers(load_plan())
        assert shared.status == "warn", shared
        assert any(
            f.startswith(
                f"session pid {pid} logs in as Ferry's own login {login} but is not Ferry's "
                "(application_name 'nightly-export', from 127.0.0.1"
            )
            for f in shared.findings
        ), shared.findings
        # The fence ends it (and not Ferry's own sessions): its writes would pass the fence.
        from ferry.hooks.replication import ReplicationHook

        hook = ReplicationHook("ferry_source", "saas")
        hook.fetch("ping")  # a session of Ferry's own, kept by the hook
        ended = hook.sessions_sharing_login(terminate=True)
        assert [s["pid"] for s in ended] == [pid]
        with pytest.raises(psycopg.OperationalError):
            cron.execute("SELECT 1")
        hook.fetch("ping")  # Ferry's own session is still there
    finally:
        cron.close()


def test_a_slot_of_ferrys_left_behind_is_named_with_the_wal_it_keeps(stand, source, target):
    from ferry.preflight import check_leftover_slots

    plan = load_plan()
    assert check_leftover_slots(plan).status == "pass"
    source.execute("SELECT pg_create_logical_replication_slot('ferry_stand_saas_capture', 'test_decoding')")
    try:
        source.execute("CREATE TABLE slot_ballast AS SELECT generate_series(1, 10000) AS n")  # WAL the slot keeps
        found = check_leftover_slots(plan)
    finally:
        source.execute("DROP TABLE IF EXISTS slot_ballast")
        source.execute("SELECT pg_drop_replication_slot('ferry_stand_saas_capture')")
    assert found.status == "warn"
    assert found.summary.startswith("1 slot(s) of Ferry's left behind: source ferry_stand_saas_capture (")
    assert any("LEFT BEHIND" in f and "test_decoding; D-day's change capture" in f for f in found.findings)
    assert "pg_drop_replication_slot" in found.remedy and "ferry_rollback" in found.remedy


def test_the_change_capture_can_start_on_both_sides_or_the_pre_flight_says_why(stand, source):
    from ferry.preflight import check_change_capture

    plan = load_plan()
    found = check_change_capture(plan)
    assert found.status == "pass", found
    assert [f.split(":")[0] for f in found.findings] == ["source", "target"]
    assert all("wal_level=logical" in f and "may decode" in f for f in found.findings)
    source.execute("CREATE ROLE ferry_weak LOGIN")
    try:
        source.execute("SET ROLE ferry_weak")
        # As a login that may not decode: the check names it and the fix (run here through the same query).
        row = source.execute(
            (Path(__file__).parents[2] / "include" / "sql" / "capture_settings.sql").read_text(),
            {"slot_name": "ferry_stand_saas_capture"},
        ).fetchone()
        assert row[3] is False  # can_decode
    finally:
        source.execute("RESET ROLE")
        source.execute("DROP ROLE ferry_weak")


def test_the_old_sources_server_reaches_the_target_as_its_reverse_subscription_will(
    stand, source, target, mistaken_plan, monkeypatch
):
    from ferry.preflight import check_reverse_replication

    plan = load_plan()
    found = check_reverse_replication(plan)
    assert found.status == "pass", found
    assert any(
        f.startswith("the old source's server connected to 127.0.0.1:") and "(probe rolled back)" in f
        for f in found.findings
    ), found.findings
    # The probe left nothing: no subscription on the old source, no slot on the target.
    probe = f"{plan.reverse_subscription}_probe"
    assert source.execute("SELECT count(*) FROM pg_subscription WHERE subname = %s", (probe,)).fetchone()[0] == 0
    assert (
        target.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'ferry%probe%'").fetchone()[0]
        == 0
    )

    # The target as the old server would reach it, but on a port nobody listens on: NO-GO, naming the field, the
    # address and the server's reason, without the connection's password.
    conn = json.loads(os.environ["AIRFLOW_CONN_FERRY_TARGET"])
    assert conn.get("password"), "the stand's target login has a password: the test checks it is not shown"
    monkeypatch.setenv("AIRFLOW_CONN_FERRY_TARGET_FROM_VMS", json.dumps(conn | {"port": 9}))
    mistaken_plan(lambda d: d["replication"]["reverse"].update(publisher_conn_id="ferry_target_from_vms"))
    refused = check_reverse_replication(load_plan())
    assert refused.status == "fail", refused
    assert "its server cannot reach the target at 127.0.0.1:9 as replication.reverse.publisher_conn_id" in (
        refused.summary
    )
    assert "could not connect to the publisher" in refused.summary and "security group" in refused.summary
    assert any(f.startswith("the old source's server could NOT connect to 127.0.0.1:9") for f in refused.findings)
    shown = " ".join([refused.summary, refused.remedy, *refused.findings])
    assert conn["password"] not in shown
    assert source.execute("SELECT count(*) FROM pg_subscription WHERE subname = %s", (probe,)).fetchone()[0] == 0


def test_schema_drift_names_each_difference_with_the_statement_that_fixes_it(stand, target, target_schema):
    """Differences planted on the target's copy of the schema, one of each kind: a column renamed, a default, an
    index dropped, a check constraint only there, a partition missing. Each is named with its statement; run on
    the target, as Ferry's login, in the order given, those statements make the schemas equal again."""
    from ferry.preflight import check_schema_drift
    from tests.integration.conftest import as_ferry

    plan = load_plan()
    with as_ferry(target, "target"):
        target.execute("ALTER TABLE customers RENAME COLUMN name TO full_name")
        target.execute("ALTER TABLE invoices ALTER COLUMN paid SET DEFAULT true")
        target.execute("DROP INDEX events_customer_id_idx")
        target.execute("ALTER TABLE invoices ADD CONSTRAINT amount_positive CHECK (amount >= 0)")
        target.execute("DROP TABLE usage_records_2026")
    found = check_schema_drift(plan)
    assert found.status == "fail", found
    fixes = {f.split("; on the target: ")[0]: f.split("; on the target: ")[1] for f in found.findings}
    assert fixes == {
        "public.customers.name (text): renamed on the source from full_name": "ALTER TABLE public.customers RENAME "
        "COLUMN full_name TO name",
        "public.invoices.paid: default false on the source, true on the target": "ALTER TABLE public.invoices ALTER "
        "COLUMN paid SET DEFAULT false",
        "public.events: index events_customer_id_idx missing on the target": "CREATE INDEX CONCURRENTLY "
        "events_customer_id_idx ON public.events USING btree (customer_id)",
        "public.invoices: constraint amount_positive (CHECK ((amount >= (0)::numeric))) only on the target": "ALTER "
        "TABLE public.invoices DROP CONSTRAINT amount_positive",
        # The target's default partition takes those rows meanwhile: the fix moves them into the new partition.
        "public.usage_records: partition public.usage_records_2026 (FOR VALUES FROM ('2026-01-01 00:00:00+00') TO "
        "('2027-01-01 00:00:00+00')) has no partition of the same bounds on the target: its rows go to the default "
        "partition public.usage_records_later there meanwhile": fixes[
            "public.usage_records: partition "
            "public.usage_records_2026 (FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2027-01-01 00:00:00+00')) has "
            "no partition of the same bounds on the target: its rows go to the default partition "
            "public.usage_records_later there meanwhile"
        ],
    }, found.findings
    moved = [f for f in fixes.values() if "DETACH PARTITION" in f][0]
    assert moved.startswith(
        "BEGIN; ALTER TABLE public.usage_records DETACH PARTITION public.usage_records_later; CREATE TABLE "
        "public.usage_records_2026 PARTITION OF public.usage_records FOR VALUES FROM ('2026-01-01 00:00:00+00') TO "
        "('2027-01-01 00:00:00+00'); DO $ferry$"
    ), moved
    assert moved.endswith(
        "; ALTER TABLE public.usage_records ATTACH PARTITION public.usage_records_later DEFAULT; COMMIT"
    )
    assert "in the order listed" in found.remedy
    from ferry.checks.schema import schema_differences

    with as_ferry(target, "target"):
        for difference in schema_differences(plan).fixes:
            for statement in difference.statements:
                target.execute(statement)
    found = check_schema_drift(plan)
    assert found.status == "pass", found.findings


def test_schema_drift_compares_functions_triggers_views_and_extensions(stand, source, target, target_schema):
    """What the tables use besides their columns: a trigger and its function added on the source (a migration), a
    view only on the target, the materialized view and an extension missing there. Each is named with its
    statement, in the order that works (extension and function before the trigger; the view dropped before the
    function it reads); run on the target, they make the schemas equal."""
    from ferry.checks.schema import schema_differences
    from ferry.preflight import check_schema_drift
    from ferry.schemas import in_carrying_order
    from tests.integration.conftest import as_ferry

    plan = load_plan()
    try:
        with as_ferry(source, "source"):
            source.execute(
                "CREATE FUNCTION stamp_updated_at() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN NEW.updated_at := now(); RETURN NEW; END$$"
            )
            source.execute(
                "CREATE TRIGGER customers_stamp BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION "
                "stamp_updated_at()"
            )
        with as_ferry(target, "target"):
            target.execute(
                "CREATE FUNCTION cents(numeric) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT ($1 * 100)::bigint'"
            )
            target.execute("CREATE VIEW invoice_cents AS SELECT id, cents(amount) AS cents FROM invoices")
            target.execute("DROP MATERIALIZED VIEW customer_revenue")
            target.execute("CREATE TABLE legacy_exports (id bigint PRIMARY KEY)")  # as if dropped on the source
        target.execute("DROP EXTENSION citext CASCADE")  # documents.filename goes with it
        found = check_schema_drift(plan)
        assert found.status == "fail", found
        said = [f.split("; on the target: ")[0] for f in found.findings]
        for expected in (
            "extension citext (in schema public): missing on the target",
            "function public.stamp_updated_at(): missing on the target",
            "public.customers: trigger customers_stamp missing on the target",
            "materialized view public.customer_revenue: missing on the target",
            "view public.invoice_cents: only on the target",
            "function public.cents(numeric): only on the target",
            "public.documents.filename (citext): missing on the target",
            "public.legacy_exports: a table in scope only on the target (dropped on the source?)",
        ):
            assert expected in said, found.findings
        # Not carried by ferry_schema_watch: its rows would go with it.
        dropped = next(d for d in schema_differences(plan).fixes if d.kind == "drop table")
        assert dropped.fix == "DROP TABLE public.legacy_exports" and "its rows on the target" in dropped.unsafe
        order = [d.what for d in in_carrying_order(schema_differences(plan).fixes)]
        assert order.index("extension citext (in schema public): missing on the target") < order.index(
            "public.documents.filename (citext): missing on the target"
        )
        assert order.index("function public.stamp_updated_at(): missing on the target") < order.index(
            "public.customers: trigger customers_stamp missing on the target"
        )
        assert order.index("view public.invoice_cents: only on the target") < order.index(
            "function public.cents(numeric): only on the target"
        )
        with as_ferry(target, "target"):
            for difference in in_carrying_order(schema_differences(plan).fixes):
                for statement in difference.statements:
                    target.execute(statement)
        found = check_schema_drift(plan)
        assert found.status == "pass", found.findings
    finally:
        with as_ferry(source, "source"):
            source.execute("DROP TRIGGER IF EXISTS customers_stamp ON customers")
            source.execute("DROP FUNCTION IF EXISTS stamp_updated_at()")


def test_after_the_cutover_the_drift_check_names_what_the_reverse_replication_would_not_carry(
    stand, source, target, target_schema
):
    from ferry.checks.base import target_hook
    from ferry.plan import in_scope
    from ferry.preflight import check_schema_drift

    plan = load_plan()
    assert check_schema_drift(plan).summary == "7 tables match on source and target"
    # The state after the cutover: the reverse publication of the tables in scope on the target, the reverse
    # subscription on the old source (here without a connection or slot: the check reads the catalogs).
    tables = [t["qualified"] for t in in_scope(plan, target_hook(plan).get_tables(plan.replication.schemas))]
    target_hook(plan).create_publication(plan.reverse_publication, tables)
    source.execute(
        f"CREATE SUBSCRIPTION {plan.reverse_subscription} CONNECTION 'host=127.0.0.1 port=9' "
        f"PUBLICATION {plan.reverse_publication} WITH (connect = false, slot_name = NONE)"
    )
    try:
        found = check_schema_drift(plan)
        assert found.status == "pass", found
        assert found.summary == "7 tables match on the old source and the target, each in the reverse publication"

        # A migration run on the new side only: a column added, a table created.
        target.execute("ALTER TABLE invoices ADD COLUMN discount numeric(12, 4)")
        target.execute("CREATE TABLE coupons (id bigint PRIMARY KEY, code text NOT NULL)")
        found = check_schema_drift(plan)
        assert found.status == "fail", found
        assert found.summary.startswith("2 schema difference(s) since the cutover that the reverse replication")
        assert sorted(found.findings) == [
            "public.coupons: on the target but not in the reverse publication "
            f"{plan.reverse_publication}: its rows would stay on the new side in a rollback",
            "public.invoices.discount: only on the target",
        ]
        assert f"ALTER PUBLICATION {plan.reverse_publication} ADD TABLE" in found.remedy
        assert f"ALTER SUBSCRIPTION {plan.reverse_subscription} REFRESH PUBLICATION" in found.remedy
    finally:
        source.execute(f"DROP SUBSCRIPTION {plan.reverse_subscription}")
        target.execute(f"DROP PUBLICATION {plan.reverse_publication}")
