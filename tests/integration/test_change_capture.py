"""The live comparison and the change capture against the stand's two real clusters: what changes after a
table's live comparison matched is named by key in the freeze, however it was written; what did not
change is not read again."""

from __future__ import annotations

import time

import pytest

from ferry.capture import SIDES, CaptureStore, ChangeCapture, capture_slot, parse_change
from ferry.compare import Comparer
from tests.integration.dags.ferry_test_replication import plant_differences
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
    return comparer.verify_tail(table, "full", live[table].carried, keys, rows, live[table].carried_hashes)


def test_changes_after_the_live_comparison_are_named_by_key_however_they_were_made(
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
    advanced past it). Planted before the capture began: changes the live comparison carries into the
    freeze (a key range; a keyless row, which makes page_views compared whole). Each is named in the
    freeze by key (or row hash)."""
    plan = replicating
    src, tgt = hooks
    # Before the capture began: differences the live comparison must carry into the freeze.
    # The write load of earlier tests deletes events: take one that exists (plant_differences deletes the last).
    diverged = target.execute(
        "UPDATE events SET kind = 'diverged-before' WHERE id = (SELECT min(id) FROM events) RETURNING id"
    ).fetchone()[0]
    target.execute("INSERT INTO page_views VALUES (NULL, '/diverged-before', '2026-01-01 00:00+00')")
    for capture in captures.values():
        state, created = capture.start()
        assert created and state.created_lsn == state.lsn
        assert capture.start()[1] is False  # a re-run keeps the slot and its state

    comparer = Comparer(src, tgt, concurrency=2, chunk_rows=300, leaf_rows=40)
    live = {table: comparer.compare_live(table, retries=1, wait_s=0.2) for table in SCOPE}
    unchanged = ("public.customers", "public.invoices", "public.subscriptions")
    assert all(live[t].equal and not live[t].carried and not live[t].carried_whole for t in unchanged), live
    assert len(live["public.events"].carried) == 1 and not live["public.events"].equal
    assert len(live["public.page_views"].carried_hashes) == 1 and not live["public.page_views"].carried_whole
    for capture in captures.values():
        assert capture.drain(SCOPE).changes == 0
        assert capture.start()[1] is False  # a re-run after a drain keeps the capture

    # After the live comparison: five ways a row comes to differ (as ferry_test_replication_planted plants them).
    planted = plant_differences()
    added, deleted = planted["customer_added_on_target"], planted["event_deleted_on_target"]
    marker = source.execute(
        "INSERT INTO invoices (subscription_id, amount, tax, issued_at) VALUES (1, 1, 0, now()) RETURNING id"
    ).fetchone()[0]
    wait_for(
        lambda: target.execute("SELECT count(*) FROM invoices WHERE id = %s", (marker,)).fetchone()[0] == 1,
        what="replication to carry the marker row",
    )

    drained = {side: capture.drain(SCOPE) for side, capture in captures.items()}
    assert drained["source"].tables == {"public.invoices": 2}  # the update never applied, and the marker
    assert drained["target"].tables == {
        "public.subscriptions": 1,
        "public.events": 1,
        "public.customers": 1,
        "public.page_views": 1,
        "public.invoices": 1,
    }

    subscriptions = verify(comparer, captures, live, "public.subscriptions")
    assert subscriptions.changed == ["4"] and subscriptions.keys_verified == 1 and not subscriptions.equal
    events = verify(comparer, captures, live, "public.events")
    assert events.changed == [str(diverged)] and events.missing_on_target == [str(deleted)]
    customers = verify(comparer, captures, live, "public.customers")
    assert customers.extra_on_target == [str(added)] and customers.ranges_compared == 1  # one batch of keys
    invoices = verify(comparer, captures, live, "public.invoices")
    assert invoices.changed == ["5"] and invoices.keys_verified == 2  # the marker row is equal
    # The row planted before the capture is not among the captured ones: page_views is compared whole.
    page_views = verify(comparer, captures, live, "public.page_views")
    assert not page_views.keyed and page_views.carried_whole.startswith("1 row(s) that differed while live")
    assert [(d["source"], d["target"]) for d in page_views.differing_rows] == [(0, 1), (0, 1)]
    # Nothing captured, nothing carried: nothing read.
    assert comparer.verify_tail("public.customers", "full", [], set(), set()).ranges_compared == 0

    # A drain again finds nothing new; a re-run of the start keeps what was captured; slots are named after
    # the plan, on both sides.
    for capture in captures.values():
        assert capture.drain(SCOPE).changes == 0
        kept, created = capture.start()
        assert not created and kept.tables == capture.store.load(capture.side).tables and kept.tables
        assert capture.slot_status()["slot_name"] == capture_slot(plan)


def test_a_capture_whose_slot_was_dropped_is_broken_so_the_freeze_compares_whole(captures):
    for capture in captures.values():
        capture.start()
    captures["target"].hook.drop_slot(captures["target"].slot)
    assert captures["source"].drain(SCOPE).broken == ""
    broken = captures["target"].drain(SCOPE).broken
    assert broken == f"slot {captures['target'].slot} is gone on the target"
    assert captures["target"].store.load("target").broken == broken


def test_a_partition_in_a_schema_outside_the_plan_is_captured_by_its_roots_scope(source, captures):
    """public.metrics is in scope; its partition lives in schema archive, which the plan does not name. A row
    written there is fenced and published through its root: the capture names it under the root, and the last
    check before the cutover counts it."""
    from tests.integration.conftest import as_ferry

    with as_ferry(source, "source"):
        source.execute("CREATE SCHEMA archive")
        source.execute("CREATE TABLE metrics (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
        source.execute(
            "CREATE TABLE archive.metrics_2025 PARTITION OF metrics FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')"
        )
    try:
        capture = captures["source"]
        capture.start()
        source.execute("INSERT INTO metrics VALUES (1, '2025-06-01')")
        assert capture.changes_since_drain(["public.metrics"]) == ({"public.metrics": 1}, "")
        drained = capture.drain(["public.metrics"])
        assert drained.tables == {"public.metrics": 1}
        assert capture.store.load("source").tables["public.metrics"].keys == {("1", "2025-06-01")}
        assert capture.changes_since_drain(["public.metrics"]) == ({}, "")
    finally:
        source.execute("DROP TABLE metrics")
        source.execute("DROP SCHEMA archive")


def test_the_last_check_excuses_keep_writing_on_the_source_only(source, target, replicating, captures, capfd):  # noqa: F811
    """The last check before the subscription's drop (ReplicationPromoteTargetOperator), run as D-day runs it: with
    ``source.keep_writing`` a change on the source is named in a warning and passes (the plan lets those roles
    write past the fence; what they write stays on the old side); a change on the target still stops the freeze.
    Without keep_writing, the same change on the source stops it."""
    from airflow.sdk.exceptions import AirflowFailException

    from ferry.operators.replication import ReplicationPromoteTargetOperator

    plan = replicating

    def last_check(keep_writing: list[str]) -> None:
        check = ReplicationPromoteTargetOperator(task_id="drop_subscription_and_sync_sequences")
        source_side = plan.source.model_copy(update={"keep_writing": keep_writing})
        check.__dict__["plan"] = plan.model_copy(update={"source": source_side})
        check.check_nothing_changed_since_comparison()

    for capture in captures.values():
        capture.start()
    for capture in captures.values():
        capture.drain(SCOPE)
    last_check([])  # nothing changed since the drain
    last_check(["saas_reports"])

    source.execute("INSERT INTO customers (email, name, country) VALUES ('kept@example.com', 'K', 'SE')")
    wait_for(
        lambda: target.execute("SELECT count(*) FROM customers WHERE email = 'kept@example.com'").fetchone()[0] == 1,
        what="the row to replicate",
    )
    with pytest.raises(AirflowFailException, match=r"source: public\.customers \(1 change\)"):
        last_check([])
    capfd.readouterr()
    last_check(["saas_reports"])
    said = "".join(capfd.readouterr())
    assert "source.keep_writing: saas_reports writes past the fence" in said
    assert "source: public.customers (1 change)" in said

    target.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/direct-on-target', now())")
    with pytest.raises(AirflowFailException, match=r"target: public\.page_views \(1 change\)") as refused:
        last_check(["saas_reports"])
    assert "source: public.customers" not in str(refused.value)  # excused, named only in the warning
    source.execute("DELETE FROM customers WHERE email = 'kept@example.com'")


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
