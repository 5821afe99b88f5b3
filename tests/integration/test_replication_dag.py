"""The replication operators end to end on the stand, with the write load running throughout."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from ferry.ledger import Ledger
from ferry.plan import load_plan
from stand.control import load, load_stats
from stand.services.postgres import APP_ROLE
from tests.integration.conftest import run_dag

TEST_DAGS = Path(__file__).parent / "dags"


def app_connection(stand, cluster: str) -> psycopg.Connection:
    port = stand.port(1 if cluster == "source" else 2)
    return psycopg.connect(
        host="127.0.0.1", port=port, dbname="saas", user=APP_ROLE, password=stand.secret("app_role"), autocommit=True
    )


@pytest.fixture
def clean_replication(stand, source, target):
    """Whatever the test leaves: fence lifted, subscription and publication dropped, target emptied."""
    yield
    load(stand, "stop")
    with psycopg.connect(**_admin(stand, "source")) as conn:
        conn.execute("DROP TRIGGER IF EXISTS ferry_fence ON public.customers")
    for sub in target.execute("SELECT subname FROM pg_subscription").fetchall():
        target.execute(f"ALTER SUBSCRIPTION {sub[0]} DISABLE")
        target.execute(f"ALTER SUBSCRIPTION {sub[0]} SET (slot_name = NONE)")
        target.execute(f"DROP SUBSCRIPTION {sub[0]}")
    for slot in source.execute("SELECT slot_name FROM pg_replication_slots").fetchall():
        source.execute("SELECT pg_drop_replication_slot(%s)", slot)
    for pub in source.execute("SELECT pubname FROM pg_publication").fetchall():
        source.execute(f"DROP PUBLICATION {pub[0]}")
    from ferry.hooks.replication import ReplicationHook

    ReplicationHook("ferry_source", "saas").remove_fence()
    target.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


def _admin(stand, cluster):
    return {
        "host": str(stand.dir / "pg" / cluster),
        "port": stand.port(1 if cluster == "source" else 2),
        "user": "postgres",
        "dbname": "saas",
        "autocommit": True,
    }


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
    assert len(compared) == 5 and all(ti.state == "success" for ti in compared)
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
    assert fence.after["roles"] == ["saas_app"] and fence.after["fence_lsn"]
    text = json.dumps([r.__dict__ for r in ledger.records()])
    for secret in json.loads(stand.state_file.read_text())["secrets"].values():
        assert secret not in text
