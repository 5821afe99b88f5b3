"""Change capture: every row that changed on either side since D-day's live comparison began.

D-day compares the tables while the application still writes (the live comparison); the write
freeze then verifies only what changed after that, by key. What changed is read from one logical
decoding slot per side (``test_decoding``, on self-managed PostgreSQL and on RDS), created before
the live comparison starts. The slot on the target sees what the subscription applies *and* every
write made there directly, with ``session_replication_role = replica`` or by a superuser too: no
trigger is involved, only the WAL.

A drain reads the slot without consuming it (``peek``), stores what it names (the key of every
changed row of a table in scope; the whole old and new row of a table without a key) in S3 beside
the ledger, and only then advances the slot. A crash between the two reads the same changes again;
storing them twice changes nothing. A slot that is gone, lost its WAL or was moved by someone else
marks the capture *broken*: the freeze then compares every table in full.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from psycopg.rows import dict_row

from ferry.hooks.postgres import load_sql
from ferry.hooks.replication import ReplicationHook
from ferry.plan import Plan

Side = Literal["source", "target"]
SIDES: tuple[Side, Side] = ("source", "target")
# A table without a key whose captured rows pass this is verified whole in the freeze instead.
MAX_KEYLESS_ROWS = 10_000
_TOAST = "unchanged-toast-datum"


def capture_slot(plan: Plan) -> str:
    """The change capture slot's name (the same on both sides), under the prefix the pre-flight watches."""
    return f"ferry_{plan.key}_capture"


# test_decoding's output ------------------------------------------------------------------------


@dataclass
class CapturedChange:
    """One row change as test_decoding prints it: the tables (several for a TRUNCATE), the action, and
    the old and new tuples as ``{quoted column: text value or None}`` (None when not printed)."""

    tables: list[str]
    action: str
    old: dict[str, Any] | None = None
    new: dict[str, Any] | None = None


class CaptureParseError(ValueError):
    """A line of test_decoding's output this parser does not understand (quoted in the message)."""


def _closing(text: str, i: int, quote: str) -> int:
    """Where the quote opened at ``i`` closes (a doubled quote inside is part of the text)."""
    j = i + 1
    while True:
        k = text.index(quote, j)
        if not text.startswith(quote, k + 1):
            return k
        j = k + 2


def _ident(text: str, i: int) -> tuple[str, int]:
    """An identifier as quote_identifier prints it (quotes kept), starting at ``i``."""
    if text.startswith('"', i):
        k = _closing(text, i, '"')
        return text[i : k + 1], k + 1
    j = i
    while j < len(text) and text[j] not in '.[:, "':
        j += 1
    return text[i:j], j


def _quoted(text: str, i: int) -> tuple[str, int]:
    k = _closing(text, i, "'")
    return text[i + 1 : k].replace("''", "'"), k + 1


def _value(text: str, i: int) -> tuple[Any, int]:
    if text.startswith(_TOAST, i):
        return _TOAST, i + len(_TOAST)
    if text.startswith("'", i):
        return _quoted(text, i)
    if text.startswith("B'", i):
        return _quoted(text, i + 1)
    j = text.find(" ", i)
    j = len(text) if j < 0 else j
    word = text[i:j]
    return (None if word == "null" else word), j


def _tuples(text: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    old: dict[str, Any] | None = None
    new: dict[str, Any] = {}
    current = new
    i = 0
    while i < len(text):
        if text.startswith(" ", i):
            i += 1
        elif text.startswith("old-key: ", i):
            old = current = {}
            i += len("old-key: ")
        elif text.startswith("new-tuple: ", i):
            new = current = {}
            i += len("new-tuple: ")
        else:
            name, i = _ident(text, i)
            i = text.index("]:", i) + 2  # past [type]: (a type may hold brackets: integer[])
            current[name], i = _value(text, i)
    return old, new


def parse_change(line: str) -> CapturedChange | None:
    """The change a line of test_decoding's output describes; None for BEGIN, COMMIT and messages."""
    if not line.startswith("table "):
        return None
    try:
        tables, i = [], len("table ")
        while True:
            schema, i = _ident(line, i)
            name, i = _ident(line, i + 1)  # past the dot
            tables.append(f"{schema}.{name}")
            if line.startswith(", ", i):
                i += 2
                continue
            break
        end = line.index(":", i + 2)
        action = line[i + 2 : end]
        rest = line[end + 2 :]
        if action == "TRUNCATE":
            return CapturedChange(tables, action)
        if rest.startswith("(no-tuple-data)"):
            return CapturedChange(tables, action)
        old, new = _tuples(rest)
        if action == "DELETE":
            return CapturedChange(tables, action, old=new)
        return CapturedChange(tables, action, old=old, new=new if action in ("INSERT", "UPDATE") else None)
    except (ValueError, IndexError) as e:
        raise CaptureParseError(f"cannot read this change capture line ({e}): {line[:300]}") from e


# What was captured ------------------------------------------------------------------------------


@dataclass
class TableCapture:
    """What changed in one table: the keys of changed rows, or (no key) the changed rows themselves;
    ``whole`` says why the table must be verified whole instead (empty: it need not)."""

    keys: set[tuple[str | None, ...]] = field(default_factory=set)
    rows: set[tuple[str | None, ...]] = field(default_factory=set)
    whole: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"keys": sorted(self.keys, key=str), "rows": sorted(self.rows, key=str), "whole": self.whole}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableCapture:
        return cls({tuple(k) for k in d["keys"]}, {tuple(r) for r in d["rows"]}, d["whole"])

    def merge(self, other: TableCapture) -> TableCapture:
        return TableCapture(self.keys | other.keys, self.rows | other.rows, self.whole or other.whole)


@dataclass
class CaptureState:
    """One side's capture, as stored in S3: its slot, where it was drained to, and what it named."""

    side: str
    slot: str
    created_lsn: str
    lsn: str
    previous_lsn: str = ""
    broken: str = ""
    changes: int = 0
    drains: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, TableCapture] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        d["tables"] = {t: c.to_dict() for t, c in self.tables.items()}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CaptureState:
        d = json.loads(text)
        d["tables"] = {t: TableCapture.from_dict(c) for t, c in d["tables"].items()}
        return cls(**d)


class CaptureStore:
    """Each side's :class:`CaptureState`, one S3 object per side under ``<plan prefix>/capture/``."""

    def __init__(self, plan: Plan) -> None:
        self.bucket = plan.ledger.bucket
        self.prefix = f"{plan.ledger_prefix}/capture/"
        self.hook = S3Hook(aws_conn_id=plan.aws.conn_id)

    def load(self, side: str) -> CaptureState | None:
        client = self.hook.get_conn()
        try:
            body = client.get_object(Bucket=self.bucket, Key=f"{self.prefix}{side}.json")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return CaptureState.from_json(body.decode())

    def save(self, state: CaptureState) -> None:
        self.hook.get_conn().put_object(
            Bucket=self.bucket,
            Key=f"{self.prefix}{state.side}.json",
            Body=state.to_json().encode(),
            ContentType="application/json",
        )

    def delete(self, side: str) -> None:
        self.hook.get_conn().delete_object(Bucket=self.bucket, Key=f"{self.prefix}{side}.json")


def capture_id(states: dict[str, CaptureState | None]) -> str | None:
    """Names one capture (both slots' starting points); None when a side has none."""
    if any(states.get(s) is None for s in SIDES):
        return None
    return "/".join(f"{s}@{states[s].created_lsn}" for s in SIDES)  # type: ignore[union-attr]


@dataclass
class DrainResult:
    side: str
    upto: str
    changes: int
    tables: dict[str, int]
    seconds: float
    broken: str = ""
    state: CaptureState | None = None
    """The side's state as this drain left it (stored in S3 too)."""


class ChangeCapture:
    """The change capture slot of one side.

    :param plan: the migration plan (scope, slot name, S3 bucket).
    :param side: ``source`` or ``target``.
    :param hook: that side's hook.
    :param store: where the state is kept (S3).
    """

    def __init__(self, plan: Plan, side: Side, hook: ReplicationHook, store: CaptureStore) -> None:
        self.plan, self.side, self.hook, self.store = plan, side, hook, store
        self.slot = capture_slot(plan)

    def slot_status(self) -> dict[str, Any] | None:
        return self.hook.fetch_one("capture_slot", slot_name=self.slot)

    def start(self) -> tuple[CaptureState, bool]:
        """Create the slot and store a fresh state; True when it was created. A slot already there whose
        stored state follows it is kept with what it captured; one without (or whose state follows another)
        gets a fresh state from where it stands, and comparisons made under the earlier one no longer count."""
        status = self.slot_status()
        state = self.store.load(self.side)
        if status is None:
            lsn = self.hook.fetch_one("capture_slot_create", slot_name=self.slot)["lsn"]
        elif (
            state is not None
            and state.slot == self.slot
            and not state.broken
            and status["confirmed_flush_lsn"] in (state.lsn, state.previous_lsn)
        ):
            return state, False
        else:
            lsn = status["confirmed_flush_lsn"]
        state = CaptureState(side=self.side, slot=self.slot, created_lsn=lsn, lsn=lsn)
        self.store.save(state)
        return state, status is None

    def stop(self) -> bool:
        """Drop the slot (its state is kept for the report); False when there was none."""
        return self.hook.drop_slot(self.slot) if self.slot_status() else False

    def _problem(self, state: CaptureState, status: dict[str, Any] | None) -> str:
        if status is None:
            return f"slot {self.slot} is gone on the {self.side}"
        if status["wal_status"] == "lost":
            return f"slot {self.slot} on the {self.side} lost WAL it needed (max_slot_wal_keep_size)"
        if status["confirmed_flush_lsn"] not in (state.lsn, state.previous_lsn):
            return (
                f"slot {self.slot} on the {self.side} is at {status['confirmed_flush_lsn']}, not where Ferry left it "
                f"({state.lsn}): someone else read or recreated it"
            )
        return ""

    def drain(self, scope: list[str], state: CaptureState | None = None) -> DrainResult:
        """Read every change committed since the last drain, store the keys it names, then consume it.
        ``state``: the side's state, when the caller just loaded it (else it is read from S3).

        One connection for all of it: the drain runs inside the write freeze too."""
        started = time.monotonic()
        state = state or self.store.load(self.side)
        if state is None:
            raise RuntimeError(f"no change capture was started on the {self.side}: run start_change_capture first")
        if state.broken:
            return DrainResult(self.side, state.lsn, 0, {}, 0.0, state.broken, state)
        with self.hook.session() as conn:
            conn.execute(load_sql("compare_session"))  # values printed as the comparison prints them
            with conn.cursor(row_factory=dict_row) as cur:
                status = cur.execute(load_sql("capture_slot"), {"slot_name": self.slot}).fetchone()
                problem = self._problem(state, status)
                if problem:
                    state.broken = problem
                    self.store.save(state)
                    return DrainResult(
                        self.side, state.lsn, 0, {}, round(time.monotonic() - started, 3), problem, state
                    )
                cur.execute(load_sql("capture_flush"))  # commits made visible before their WAL was flushed
                upto = cur.execute(load_sql("capture_flush_lsn")).fetchone()["lsn"]
                tables = _Tables(
                    cur.execute(load_sql("capture_tables"), {"schemas": self.plan.replication.schemas}), scope
                )
            found: dict[str, TableCapture] = {}
            changes = 0
            with conn.transaction(), conn.cursor(name="ferry_capture") as peek:
                peek.itersize = 10_000
                peek.execute(load_sql("capture_peek"), {"slot_name": self.slot, "upto": upto, "only_local": "0"})
                for _xid, data in peek:
                    change = parse_change(data)
                    if change is not None and tables.record(change, found):
                        changes += 1
            for table, captured in found.items():
                state.tables[table] = state.tables.get(table, TableCapture()).merge(captured)
                if not state.tables[table].whole and len(state.tables[table].rows) > MAX_KEYLESS_ROWS:
                    state.tables[table].whole = f"more than {MAX_KEYLESS_ROWS} rows of a table without a key changed"
            state.previous_lsn, state.lsn = state.lsn, upto
            state.changes += changes
            seconds = round(time.monotonic() - started, 3)
            state.drains.append(
                {"at": datetime.now(UTC).isoformat(), "upto": upto, "changes": changes, "seconds": seconds}
            )
            self.store.save(state)  # stored before the slot moves past them
            advanced = conn.execute(load_sql("capture_advance"), {"slot_name": self.slot, "upto": upto}).fetchone()[0]
        if advanced != upto:
            state.lsn = advanced
            self.store.save(state)
        counts = {t: len(c.keys) + len(c.rows) for t, c in found.items()}
        return DrainResult(self.side, upto, changes, counts, round(time.monotonic() - started, 3), state=state)

    def changes_since_drain(self, scope: list[str]) -> tuple[dict[str, int], str]:
        """The changes to tables in ``scope`` committed since the last drain, counted per table, read without
        consuming them; and why they could not be read ('' when they could: the slot is where the last drain
        left it). The last check before the cutover: nothing may change after the freeze's comparison. Only the
        changes made on this side count: on the target, a row its subscription applied is the source's change,
        counted on the source."""
        state = self.store.load(self.side)
        if state is None:
            return {}, f"no change capture was started on the {self.side}"
        if state.broken:
            return {}, state.broken
        counts: dict[str, int] = {}
        with self.hook.session() as conn:
            conn.execute(load_sql("compare_session"))
            with conn.cursor(row_factory=dict_row) as cur:
                problem = self._problem(
                    state, cur.execute(load_sql("capture_slot"), {"slot_name": self.slot}).fetchone()
                )
                if problem:
                    return {}, problem
                cur.execute(load_sql("capture_flush"))
                upto = cur.execute(load_sql("capture_flush_lsn")).fetchone()["lsn"]
                tables = _Tables(
                    cur.execute(load_sql("capture_tables"), {"schemas": self.plan.replication.schemas}), scope
                )
            with conn.transaction(), conn.cursor(name="ferry_capture_check") as peek:
                peek.itersize = 10_000
                peek.execute(load_sql("capture_peek"), {"slot_name": self.slot, "upto": upto, "only_local": "1"})
                for _xid, data in peek:
                    change = parse_change(data)
                    found: dict[str, TableCapture] = {}
                    if change is not None and tables.record(change, found):
                        for table in found:
                            counts[table] = counts.get(table, 0) + 1
        return counts, ""


class _Tables:
    """What a drain needs to know of the tables it reads changes of (``capture_tables.sql``'s rows): the
    table compared (a partition's root), and its key columns, or all its columns when it has no key."""

    def __init__(self, rows: Any, scope: list[str]) -> None:
        self.scope = set(scope)
        self.roots: dict[str, str] = {}
        self.columns: dict[str, tuple[list[str], bool]] = {}
        for row in rows:
            self.roots[row["name"]] = row["root"]
            keyed = row["key_columns"] is not None
            self.columns[row["root"]] = (row["key_columns"] if keyed else row["columns"], keyed)

    def record(self, change: CapturedChange, found: dict[str, TableCapture]) -> bool:
        """Add what ``change`` names to ``found``; False when it touches no table in scope."""
        counted = False
        for name in change.tables:
            table = self.roots.get(name, name)
            if table not in self.scope:
                continue
            counted = True
            captured = found.setdefault(table, TableCapture())
            if change.action == "TRUNCATE":
                captured.whole = "truncated"
                continue
            if change.old is None and change.new is None:
                captured.whole = f"a {change.action} without the row's identity (replica identity)"
                continue
            columns, keyed = self.columns[table]
            for values in (change.old, change.new):
                if values is None:
                    continue
                row = tuple(values.get(c, _TOAST) for c in columns)
                if _TOAST in row:
                    captured.whole = f"a {change.action} whose row was not printed whole"
                elif keyed:
                    captured.keys.add(row)
                else:
                    captured.rows.add(row)
        return counted
