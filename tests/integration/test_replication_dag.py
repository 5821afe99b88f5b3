"""The replication operators end to end on the stand, with the write load running throughout."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psycopg
import pytest

from ferry.hooks.replication import ReplicationHook
from ferry.ledger import Ledger
from ferry.plan import load_plan
from stand.control import load, load_stats
from tests.integration.conftest import app_connection, as_ferry, run_dag

TEST_DAGS = Path(__file__).parent / "dags"


def test_replication_from_scratch_to_a_writable_target_under_write_load(
    stand, source, target, clean_replication, request
):
    plan = load_plan()
    # A sequence set with setval(..., false) on the source: never called, so no last value shows, yet its next
    # value is 5000. The target's must follow it past.
    with as_ferry(source, "source"):
        source.execute("CREATE SEQUENCE ticket_seq")
    source.execute("SELECT setval('ticket_seq', 5000, false)")
    request.addfinalizer(lambda: source.execute("DROP SEQUENCE IF EXISTS ticket_seq"))
    # A row whose id its sequence never handed out (given explicitly, or come by replication): the target's
    # sequence must go past it too, not only past the source's sequence.
    (subscriptions_seq,) = source.execute("SELECT last_value FROM subscriptions_id_seq").fetchone()
    source.execute(
        "INSERT INTO subscriptions (id, customer_id, plan, amount, status, started_at) "
        "VALUES (%s, 1, 'team', 10, 'active', now())",
        (subscriptions_seq + 50_000,),
    )

    def forget_it() -> None:
        ReplicationHook("ferry_source", "saas").remove_fence()  # the fence holds every role's writes
        # The write load may have invoiced it meanwhile.
        source.execute("DELETE FROM invoices WHERE subscription_id = %s", (subscriptions_seq + 50_000,))
        source.execute("DELETE FROM subscriptions WHERE id = %s", (subscriptions_seq + 50_000,))

    request.addfinalizer(forget_it)
    load(stand, "start", rate=100)
    time.sleep(1)
    run = run_dag(TEST_DAGS, "ferry_test_replication")
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    time.sleep(1.5)  # the load keeps trying to write for a while after the fence
    stats = load_stats(stand)
    assert stats["committed"] > 50
    assert stats["refused"] > 0, "writes after the fence must be refused"

    # Every table compared equal, by rows and content.
    # Every table verified by its changes since the live comparison (compare_changes); none compared whole.
    assert states[("compare_changes", -1)] == "success"
    report = next(
        Path(os.environ["FERRY_REPORT_DIR"], "compare").glob(f"ferry_test_replication__*{run.run_id[-12:-6]}*.md")
    )
    assert report.read_text().count("| EQUAL |") == 7
    # Compared live under the write load; in the freeze, only the rows captured as changed since.
    assert report.read_text().count("| tail |") == 7
    live = [ti for ti in run.get_task_instances() if ti.task_id == "compare_live"]
    assert len(live) == 7 and all(ti.state == "success" for ti in live)
    counts = {
        t: (
            source.execute(f"SELECT count(*) FROM {t}").fetchone()[0],
            target.execute(f"SELECT count(*) FROM {t}").fetchone()[0],
        )
        for t in ("customers", "subscriptions", "invoices", "events", "page_views")
    }
    assert all(s == t for s, t in counts.values()), counts

    # The subscription is gone (and its slot on the source); the sequences moved past the source's.
    assert target.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
    assert source.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
    for seq in ("customers_id_seq", "invoices_id_seq", "invoice_number_seq"):
        src = source.execute(f"SELECT last_value FROM {seq}").fetchone()[0]
        tgt = target.execute(f"SELECT last_value FROM {seq}").fetchone()[0]
        assert tgt == src + plan.thresholds.sequence_gap, seq
    assert target.execute("SELECT nextval('ticket_seq')").fetchone()[0] > 5000 + plan.thresholds.sequence_gap - 1
    (past,) = target.execute("SELECT last_value FROM subscriptions_id_seq").fetchone()
    assert past == subscriptions_seq + 50_000 + plan.thresholds.sequence_gap

    # The application writes on the target without a key conflict, through its own role.
    with app_connection(stand, "target") as app:
        customer = app.execute(
            "INSERT INTO customers (email, name, country) VALUES ('new@example.com', 'New', 'NL') RETURNING id"
        ).fetchone()[0]
        app.execute("INSERT INTO events (customer_id, kind, payload) VALUES (%s, 'signup', '{}')", (customer,))
        app.execute("INSERT INTO invoices (subscription_id, amount, tax, issued_at) VALUES (1, 9.99, 1.9, now())")
        app.execute(
            "INSERT INTO subscriptions (customer_id, plan, amount, status, started_at) VALUES (%s, 'team', 10, 'active', now())",
            (customer,),
        )
    # ... and not on the source, which stays fenced.
    with app_connection(stand, "source") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        app.execute("INSERT INTO customers (email, name, country) VALUES ('late@example.com', 'Late', 'NL')")

    # Every change is in the ledger, with no secret in it.
    ledger = Ledger(plan)
    actions = [r.action for r in ledger.records()]
    for action in (
        "copy_schema",
        "create_publication",
        "create_subscription",
        "fence_source",
        "drop_subscription",
        "set_sequence",
    ):
        assert action in actions
    fence = ledger.last("fence_source", "source:saas")
    # Every writer is held: the application and the reporting tool the plan does not list.
    assert fence.after["roles"] == ["saas_app", "saas_reports"] and fence.after["fence_lsn"]
    assert fence.after["allowed"] == ["doadmin"]
    text = json.dumps([r.__dict__ for r in ledger.records()])
    for secret in json.loads(stand.state_file.read_text())["secrets"].values():
        assert secret not in text


def test_the_freeze_names_every_row_changed_after_its_live_comparison(stand, source, target, clean_replication):
    """Rows made to differ after every live comparison matched (plant_differences: directly on the target,
    with session_replication_role = replica too, a keyless row, and a source change the target never
    applies): the freeze's comparison stops the run naming each; tables nothing touched are not read again."""
    run = run_dag(TEST_DAGS, "ferry_test_replication_planted")
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "failed", states
    assert (
        states[("plant_differences", -1)] == "success"
        and states[("drop_subscription_and_sync_sequences", -1)] == "upstream_failed"
    )
    planted = next(ti for ti in run.get_task_instances() if ti.task_id == "plant_differences").xcom_pull(
        task_ids="plant_differences"
    )
    added, deleted = planted["customer_added_on_target"], planted["event_deleted_on_target"]
    report = next(
        Path(os.environ["FERRY_REPORT_DIR"], "compare").glob(
            f"ferry_test_replication_planted__*{run.run_id[-12:-6]}*.md"
        )
    ).read_text()
    sections = {
        part.split(":", 1)[0]: part for part in report.split("\n## ")[1:]
    }  # "public.x: DIFFERENT\n\n- ..." per table
    failed = {task: state for task, state in states.items() if state not in ("success", "upstream_failed")}
    assert sorted(sections) == [
        "public.customers",
        "public.events",
        "public.invoices",
        "public.page_views",
        "public.subscriptions",
    ], f"tasks not successful: {failed}\n{report}"
    assert "- changed: 4\n" in sections["public.subscriptions"]
    assert f"- missing on the target: {deleted}\n" in sections["public.events"]
    assert f"- only on the target: {added}\n" in sections["public.customers"]
    assert "- changed: 5\n" in sections["public.invoices"]
    assert ": 0 on the source, 1 on the target" in sections["public.page_views"]
    rows = {
        line.split(" | ")[0].removeprefix("| "): line for line in report.splitlines() if line.startswith("| public.")
    }
    for table in ("public.documents", "public.usage_records"):  # untouched since their live comparison
        assert rows[table].startswith(f"| {table} | EQUAL |") and "| tail |" in rows[table], rows[table]
        assert rows[table].endswith("| 0 | 0 |"), rows[table]  # no key verified, no range read in the freeze


def test_the_whole_comparison_stays_in_the_freeze_when_the_plan_says_full(
    stand, source, target, clean_replication, mistaken_plan
):
    """thresholds.compare_in_freeze: full: no change capture slot is created, nothing is compared live, and
    every table is compared whole in the freeze (by compare_changes, tables side by side), equal."""
    mistaken_plan(lambda d: d["thresholds"].update(compare_in_freeze="full"))
    run = run_dag(TEST_DAGS, "ferry_test_replication")
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    compared = next(ti for ti in run.get_task_instances() if ti.task_id == "compare_changes")
    results = compared.xcom_pull(task_ids="compare_changes", key="comparison")
    assert len(results) == 7 and all(r["equal"] and r["phase"] == "full" for r in results), results
    assert all(r["carried_whole"] == "thresholds.compare_in_freeze is 'full'" for r in results)
    capture = [r for r in Ledger(load_plan()).records() if r.run_id == run.run_id and "capture" in r.action]
    assert capture == [] and source.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
    report = next(
        Path(os.environ["FERRY_REPORT_DIR"], "compare").glob(f"ferry_test_replication__*{run.run_id[-12:-6]}*.md")
    ).read_text()
    assert report.count("| full |") == 7 and "thresholds.compare_in_freeze is 'full'" in report
