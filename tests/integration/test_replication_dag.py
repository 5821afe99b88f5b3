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
from tests.integration.conftest import app_connection, empty_public_schema, run_dag

TEST_DAGS = Path(__file__).parent / "dags"


@pytest.fixture
def clean_replication(stand, target):
    """Whatever the test leaves: load stopped, fence lifted, subscription and publication dropped, target emptied."""
    yield
    plan = load_plan()
    source_hook, target_hook = ReplicationHook("ferry_source", "saas"), ReplicationHook("ferry_target", "saas")
    load(stand, "stop")
    source_hook.remove_fence()
    target_hook.drop_subscription(plan.subscription, publisher_reachable=False)
    source_hook.drop_slot(plan.subscription)
    source_hook.drop_publication(plan.publication)
    empty_public_schema(target)


def test_replication_from_scratch_to_a_writable_target_under_write_load(stand, source, target, clean_replication):
    plan = load_plan()
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
    compared = [ti for ti in run.get_task_instances() if ti.task_id == "compare_table"]
    assert len(compared) == 7 and all(ti.state == "success" for ti in compared)
    report = next(
        Path(os.environ["FERRY_REPORT_DIR"], "compare").glob(f"ferry_test_replication__*{run.run_id[-12:-6]}*.md")
    )
    assert report.read_text().count("| EQUAL |") == 7
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
    assert fence.after["allowed"] == ["postgres"]
    text = json.dumps([r.__dict__ for r in ledger.records()])
    for secret in json.loads(stand.state_file.read_text())["secrets"].values():
        assert secret not in text
