"""The live comparison and the change capture against the stand's two real clusters: what changes after a
table's live comparison matched is named by key in the freeze, however it was written; what did not
change is not read again."""

from __future__ import annotations

import time

import pytest

from ferry.capture import SIDES, CaptureStore, ChangeCapture, capture_slot, parse_change
from ferry.compare import Comparer
from tests.integration.test_replication_parts import SCOPE, hooks, replicating  # noqa: F401 (fixtures)


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def captures(stand, replicating, hooks):  # noqa: F811
    plan = replicating
    store = CaptureStore(plan)
    made = {side: ChangeCapture(plan, side, hook, store) for side, hook in zip(SIDES, hooks, strict=True)}
    yield made
    for capture in made.values():
        capture.stop()
        store.delete(capture.side)


def verify(comparer: Comparer, captures, live: dict, table: str):
    states = {side: c.store.load(side) for side, c in captures.items()}
    captured = [s.tables[table] for s in states.values() if table in s.tables]
    assert not any(c.whole for c in captured), [c.whole for c in captured]
    keys = set().union(*(c.keys for c in captured)) if captured else set()
    rows = set().union(*(c.rows for c in captured)) if captured else set()
    return comparer.verify_tail(table, "full", live[table].carried, keys, rows)


def test_changes_after_the_live_comparison_are_named_by_key_and_untouched_tables_are_not_read(
    stand,
    source,
    target,
    replicating,  # noqa: F811
    hooks,  # noqa: F811
    captures,
):
    """Planted after every table's live comparison: an update by a superuser, a delete under
    session_replication_role = replica and an insert, all made directly on the target; a row on the
    keyless page_views; and an update on the source the target never applies (its replication origin
    advanced past it). Planted before the capture began: a change the live comparison carries into the
    freeze. Each is named in the freeze by key (or row); customers, untouched, is not read again."""
    plan = replicating
    src, tgt = hooks
    target.execute("UPDATE events SET kind = 'diverged-before' WHERE id = 10")  # before the capture began
    for capture in captures.values():
        state, created = capture.start()
        assert created and state.created_lsn == state.lsn
        assert capture.start()[1] is False  # a re-run keeps the slot and its state

    comparer = Comparer(src, tgt, concurrency=2, chunk_rows=300, leaf_rows=40)
    live = {table: comparer.compare_live(table, retries=1, wait_s=0.2) for table in SCOPE}
    assert all(live[t].carried == [] and not live[t].carried_whole for t in SCOPE if t != "public.events"), live
    assert len(live["public.events"].carried) == 1 and live["public.events"].rows_source > 300
    for capture in captures.values():
        assert capture.drain(SCOPE).changes == 0

    # After the live comparison: five ways a row comes to differ.
    target.execute("UPDATE subscriptions SET amount = amount + 1 WHERE id = 4")
    target.execute("SET session_replication_role = replica")
    target.execute("DELETE FROM events WHERE id = 12")
    target.execute("RESET session_replication_role")
    new_id = target.execute(
        "INSERT INTO subscriptions (id, customer_id, plan, amount, status, started_at) "
        "SELECT max(id) + 1000, 1, 'planted', 1, 'active', now() FROM subscriptions RETURNING id"
    ).fetchone()[0]
    target.execute("INSERT INTO page_views VALUES (NULL, '/planted ''quoted''', '2026-01-01 00:00+00')")
    origin = target.execute("SELECT 'pg_' || oid FROM pg_subscription WHERE subname = %s", (plan.subscription,))
    origin = origin.fetchone()[0]
    target.execute(f"ALTER SUBSCRIPTION {plan.subscription} DISABLE")
    wait_for(
        lambda: (
            target.execute(
                "SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL", (plan.subscription,)
            ).fetchone()[0]
            == 0
        ),
        what="the apply worker to stop",
    )
    source.execute("UPDATE invoices SET amount = amount + 1 WHERE id = 5")
    skip_to = source.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    target.execute("SELECT pg_replication_origin_advance(%s, %s::pg_lsn)", (origin, skip_to))
    target.execute(f"ALTER SUBSCRIPTION {plan.subscription} ENABLE")
    marker = source.execute(
        "INSERT INTO invoices (subscription_id, amount, tax, issued_at) VALUES (1, 1, 0, now()) RETURNING id"
    ).fetchone()[0]
    wait_for(
        lambda: target.execute("SELECT count(*) FROM invoices WHERE id = %s", (marker,)).fetchone()[0] == 1,
        what="replication to carry the marker row",
    )

    drained = {side: capture.drain(SCOPE) for side, capture in captures.items()}
    assert drained["source"].tables == {"public.invoices": 2}
    assert drained["target"].tables == {
        "public.subscriptions": 2,
        "public.events": 1,
        "public.page_views": 1,
        "public.invoices": 1,
    }

    subscriptions = verify(comparer, captures, live, "public.subscriptions")
    assert subscriptions.changed == ["4"] and subscriptions.extra_on_target == [str(new_id)]
    assert subscriptions.keys_verified == 2 and not subscriptions.equal
    events = verify(comparer, captures, live, "public.events")
    assert events.changed == ["10"] and events.missing_on_target == ["12"]
    invoices = verify(comparer, captures, live, "public.invoices")
    assert invoices.changed == ["5"] and invoices.keys_verified == 2  # the marker row is equal
    page_views = verify(comparer, captures, live, "public.page_views")
    assert not page_views.keyed and [(d["source"], d["target"]) for d in page_views.differing_rows] == [(0, 1)]
    customers = verify(comparer, captures, live, "public.customers")
    assert customers.equal and customers.ranges_compared == 0 and customers.keys_verified == 0

    # A drain again finds nothing new; slots are named after the plan, on both sides.
    for capture in captures.values():
        assert capture.drain(SCOPE).changes == 0
        assert capture.slot_status()["slot_name"] == capture_slot(plan)


def test_a_capture_whose_slot_was_dropped_is_broken_so_the_freeze_compares_whole(captures):
    for capture in captures.values():
        capture.start()
    captures["target"].hook.drop_slot(captures["target"].slot)
    assert captures["source"].drain(SCOPE).broken == ""
    broken = captures["target"].drain(SCOPE).broken
    assert broken == f"slot {captures['target'].slot} is gone on the target"
    assert captures["target"].store.load("target").broken == broken


def test_test_decoding_lines_are_read_with_quotes_nulls_arrays_and_partitions():
    line = (
        'table public."Odd Name": UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 '
        "note[text]:'it''s new-tuple: here' tags[text[]]:'{a,b}' gone[numeric]:null big[text]:unchanged-toast-datum"
    )
    change = parse_change(line)
    assert change.tables == ['public."Odd Name"'] and change.action == "UPDATE"
    assert change.old == {"id": "1"}
    assert change.new["note"] == "it's new-tuple: here" and change.new["tags"] == "{a,b}"
    assert change.new["gone"] is None and change.new["id"] == "2"
    assert parse_change("table public.a, public.b: TRUNCATE: (no-flags)").tables == ["public.a", "public.b"]
    delete = parse_change("table public.t: DELETE: id[bigint]:7")
    assert delete.old == {"id": "7"} and delete.new is None
    assert parse_change("table public.t: DELETE: (no-tuple-data)").old is None
    assert parse_change("BEGIN 1234") is None and parse_change("COMMIT 1234") is None
