"""Data comparison between source and target: the D-day gate that proves no row was lost.

For each table, the row count and an order-independent content hash (a sum of 64-bit row hashes,
which counts duplicates) are computed on both servers at the same time: first over the whole table
(one scan per side, shared by PostgreSQL's parallel workers), and only when that differs, over key
ranges cut at values of the key's first column, all measured in one more pass. A row's hash combines
its columns' own 64-bit hash functions, except for types whose hash calls visibly different values
equal (numeric 1.10 and 1.1, and 5 and -5; float -0 and 0; interval '1 day' and '24:00'; jsonb 1 and
1.0, and 5 and -5) or that have none: numeric is hashed by its binary form (sign, scale and digits),
the others by their text form, under identical session settings on both sides so that the text forms
match. Text is hashed under the "C" collation (a case-insensitive one would call 'abc' and 'ABC'
equal). Key ranges are cut and bounded in the key's own order. A range that differs is split at its
median key until it is small, then its rows' keys and hashes are compared to name the keys that
differ. A table without a key is compared as a multiset of rows.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ferry.hooks.postgres import load_sql
from ferry.hooks.replication import ReplicationHook

Mode = Literal["full", "counts"]
INTEGER_TYPES = {"smallint", "integer", "bigint"}
PROGRESS_PASSES = 10  # a large table's live comparison: its progress is said after each tenth
# Types whose extended hash function separates every pair of values that look different (not jsonb: its
# hash calls the numbers 1 and 1.0 equal; it is hashed by its text).
NATIVE_HASH_TYPES = (
    "smallint",
    "integer",
    "bigint",
    "boolean",
    "text",
    "character varying",
    "character",
    "uuid",
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "bytea",
    "inet",
    "cidr",
    "macaddr",
    "oid",
)


# Text hashes by its column's collation, and a non-deterministic one (case-insensitive ICU) calls 'abc'
# and 'ABC' equal: these are hashed under "C", byte by byte.
TEXT_TYPES = ("text", "character varying", "character")


def row_hash(columns: list[dict[str, str]]) -> sql.Composable:
    """The 64-bit hash of a row of a table with ``columns`` (each ``column`` quoted, ``type`` as format_type gives)."""

    def part(column: str, type_: str) -> sql.Composable:
        base = type_.removesuffix("[]").split("(")[0]
        if base in TEXT_TYPES:
            return sql.SQL('{} COLLATE "C"').format(sql.SQL(column))
        if base in NATIVE_HASH_TYPES:
            return sql.SQL(column)
        if type_.split("(")[0] == "numeric":  # its binary form holds sign and scale, and is cheaper than text
            return sql.SQL("numeric_send({})").format(sql.SQL(column))
        return sql.SQL("{}::text").format(sql.SQL(column))

    return sql.SQL("hash_record_extended(ROW({}), 0)").format(
        sql.SQL(", ").join(part(c["column"], c["type"]) for c in columns)
    )


# Types whose text reads back as the same value and whose "=" holds for equal text: a keyless table's
# captured rows are looked up by one such column first (see _verify_rows), integers first.
PREFILTER_TYPES = (
    "bigint",
    "integer",
    "smallint",
    "uuid",
    "timestamp with time zone",
    "timestamp without time zone",
    "date",
    "text",
    "character varying",
)


def _prefilter_column(columns: list[dict[str, str]]) -> int | None:
    """The index of the column a keyless table's captured rows are first looked up by, or None."""
    ranked = [
        (PREFILTER_TYPES.index(c["type"].split("(")[0]), i)
        for i, c in enumerate(columns)
        if c["type"].split("(")[0] in PREFILTER_TYPES
    ]
    return min(ranked)[1] if ranked else None


# Rows sampled (a few pages of the table) to cut the key ranges of a key whose first column is not an integer.
SAMPLE_ROWS = 20_000
COLLATABLE = ("text", "character varying", "character", "citext", "name")


@dataclass
class TableComparison:
    """What the comparison of one table found."""

    table: str
    mode: str
    equal: bool = True
    keyed: bool = True
    rows_source: int = 0
    rows_target: int = 0
    chunks: int = 0
    ranges_compared: int = 0
    seconds: float = 0.0
    missing_on_target: list[str] = field(default_factory=list)
    extra_on_target: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    differing_rows: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    phase: str = "full"
    """``full`` (the whole table), ``live`` (while the application writes) or ``tail`` (in the freeze, only what
    changed since the live comparison and the ranges it left unresolved)."""
    keys_verified: int = 0
    rows_verified: int = 0
    carried: list[list[list[str] | None]] = field(default_factory=list)
    """Live: the key ranges (lower, upper; None is open) still differing, to compare again in the freeze."""
    carried_hashes: list[str] = field(default_factory=list)
    """Live, a table without a key: the hashes of the rows still differing, each to be among the rows the
    change capture saw change (else the freeze compares the table whole)."""
    carried_whole: str = ""
    """Live or tail: why the whole table is (or was) compared in the freeze instead."""
    capture: str = ""
    started_at: str = ""
    equal_multiset: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def differences(self) -> int:
        return len(self.missing_on_target) + len(self.extra_on_target) + len(self.changed) + len(self.differing_rows)


def _same(src: dict[str, Any], tgt: dict[str, Any]) -> bool:
    """Whether a range measured the same on both sides (rows and content hash)."""
    return (src["rows"], src["hash"]) == (tgt["rows"], tgt["hash"])


@dataclass(frozen=True)
class _Range:
    """Keys from ``lower`` (inclusive) to ``upper`` (exclusive), each a tuple of key texts; None is open."""

    lower: tuple[str, ...] | None
    upper: tuple[str, ...] | None


class _Side:
    """One server, a connection per worker thread, each with the comparison's session settings."""

    def __init__(self, hook: ReplicationHook, concurrency: int) -> None:
        self.hook = hook
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ferry-compare")
        self.local = threading.local()
        self.connections: list[psycopg.Connection] = []
        self.lock = threading.Lock()

    def _conn(self) -> psycopg.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.hook.get_conn()
            conn.autocommit = True
            conn.execute(load_sql("compare_session"))
            self.local.conn = conn
            with self.lock:
                self.connections.append(conn)
        return conn

    def submit(
        self, statement: sql.Composable, params: dict[str, Any] | None = None, settings: dict[str, str] | None = None
    ) -> Future:
        """Run ``statement`` on a connection of the pool, under ``settings`` (planner settings for this one
        statement, reset after it)."""

        def run() -> list[dict[str, Any]]:
            conn = self._conn()
            with conn.cursor(row_factory=dict_row) as cur:
                for name, value in (settings or {}).items():
                    cur.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                try:
                    cur.execute(statement, params)
                    return cur.fetchall()
                finally:
                    for name in settings or {}:
                        cur.execute(sql.SQL("RESET {}").format(sql.Identifier(name)))
                    if settings:
                        cur.execute(load_sql("compare_session"))

        return self.pool.submit(run)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for conn in self.connections:
            conn.close()


class Comparer:
    """Compare tables between two servers.

    :param source: the source server's hook.
    :param target: the target server's hook.
    :param concurrency: key ranges of one table compared at once (on each server).
    :param chunk_rows: rows per key range in the first pass.
    :param leaf_rows: ranges this small are compared row by row instead of split further.
    :param diff_limit: differing keys to name per table before stopping the search.
    """

    def __init__(
        self,
        source: ReplicationHook,
        target: ReplicationHook,
        concurrency: int = 2,
        chunk_rows: int = 250_000,
        leaf_rows: int = 1_000,
        diff_limit: int = 100,
        progress: Callable[[str, int, int, float], None] | None = None,
        progress_min_rows: int = 2_000_000,
    ) -> None:
        self.source, self.target = source, target
        self.concurrency = concurrency
        self.chunk_rows, self.leaf_rows, self.diff_limit = chunk_rows, leaf_rows, diff_limit
        # The live comparison of a table of at least progress_min_rows (estimated) with an integer key: its one pass
        # is made in PROGRESS_PASSES passes over consecutive key ranges, and progress(table, rows compared, rows
        # estimated, seconds) is called after each (the task's log then says how far it is, the rate and an ETA).
        self.progress, self.progress_min_rows = progress, progress_min_rows
        self._kept: tuple[_Side, _Side] | None = None
        self._collations: set[str] | None = None

    def __enter__(self) -> Comparer:
        """Keep one set of connections for every table compared until the block ends (many small
        comparisons, as in the write freeze, then pay for connecting once)."""
        self._kept = (_Side(self.source, self.concurrency), _Side(self.target, self.concurrency))
        return self

    def __exit__(self, *exc: object) -> None:
        kept, self._kept = self._kept, None
        for side in kept or ():
            side.close()

    def collations(self, sides: tuple[_Side, _Side]) -> set[str]:
        """The two databases' collations (once per comparer)."""
        if self._collations is None:
            statement = sql.SQL(load_sql("database_collation"))
            self._collations = {f.result()[0]["collation"] for f in [s.submit(statement) for s in sides]}
        return self._collations

    def compare_table(self, table: str, mode: Mode = "full") -> TableComparison:
        """Compare ``table`` (a quoted, schema-qualified name) on both servers, all of it."""

        def body(sides, key, columns, hashed, result: TableComparison) -> None:
            if key is None:
                self._compare_multiset(sides, table, hashed, mode, result)
            else:
                self._keyed(sides, table, key, hashed, mode, result).run()

        return self._with_sides(table, "full", mode, body)

    def _keyed(
        self,
        sides: tuple[_Side, _Side],
        table: str,
        key: dict[str, Any],
        hashed: sql.Composable,
        mode: Mode,
        result: TableComparison,
    ) -> _KeyedTable:
        return _KeyedTable(self, sides, table, key["key_columns"], key["key_types"], hashed, mode, result)

    def _with_sides(self, table: str, phase: str, mode: Mode, body: Callable[..., None]) -> TableComparison:
        started = time.monotonic()
        result = TableComparison(table=table, mode=mode, phase=phase)
        sides = self._kept or (_Side(self.source, self.concurrency), _Side(self.target, self.concurrency))
        try:
            found = sides[0].submit(sql.SQL(load_sql("table_key")), {"table": table})
            columns = sides[0].submit(sql.SQL(load_sql("row_columns")), {"table": table}).result()
            key = next(iter(found.result()), None)
            result.keyed = key is not None
            body(sides, key, columns, row_hash(columns), result)
        finally:
            if sides is not self._kept:
                for side in sides:
                    side.close()
        if phase == "live":  # equal once nothing is carried into the freeze (the first pass may have met lag)
            result.equal = not (result.carried or result.carried_hashes or result.carried_whole)
        else:
            result.equal = result.differences == 0 and result.rows_source == result.rows_target
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def compare_live(
        self, table: str, mode: Mode = "full", retries: int = 3, wait_s: float = 2.0, max_carried: int = 200
    ) -> TableComparison:
        """Compare ``table`` while the application writes and replication streams. Ranges that still
        differ after ``retries`` are carried (``result.carried``) to be compared again in the freeze; a table
        without a key that still differs, or too many ranges, are carried whole (``result.carried_whole``)."""

        def body(sides, key, columns, hashed, result: TableComparison) -> None:
            if key is None:
                for attempt in range(retries + 1):
                    probe = TableComparison(table=table, mode=mode)
                    self._compare_multiset(
                        sides, table, hashed, "counts" if mode == "counts" else "full", probe, name_rows=False
                    )
                    result.rows_source, result.rows_target = probe.rows_source, probe.rows_target
                    result.chunks, result.ranges_compared = 1, result.ranges_compared + 1
                    if probe.equal_multiset or attempt == retries:
                        break
                    time.sleep(wait_s)
                if probe.equal_multiset:
                    return
                # Which rows differ (by hash): in the freeze, each must be among the rows captured as changed
                # (replication was behind on them), else the table is compared whole there.
                if mode != "counts":
                    self._compare_multiset(sides, table, hashed, "full", probe)
                if mode == "counts" or probe.truncated or not probe.differing_rows:
                    result.carried_whole = "a table without a key that differed while live"
                else:
                    result.carried_hashes = [d["row_hash"] for d in probe.differing_rows]
                return
            carried = self._keyed(sides, table, key, hashed, mode, result).run_live(retries, wait_s, max_carried)
            if carried is None:
                result.carried_whole = "too many key ranges differed while live"
            else:
                result.carried = [
                    [list(r.lower) if r.lower else None, list(r.upper) if r.upper else None] for r in carried
                ]
            # Keys named while live may be replication catching up: the freeze decides.
            result.missing_on_target, result.extra_on_target, result.changed = [], [], []
            result.truncated = False

        return self._with_sides(table, "live", mode, body)

    def verify_tail(
        self,
        table: str,
        mode: Mode = "full",
        carried: list[list[list[str] | None]] | None = None,
        keys: set[tuple[str | None, ...]] | None = None,
        rows: set[tuple[str | None, ...]] | None = None,
        carried_hashes: list[str] | None = None,
    ) -> TableComparison:
        """Compare in the freeze only what the live comparison left open: the ``carried`` key ranges, the
        rows of the captured ``keys`` (keyed table) or the captured ``rows`` (table without a key). Reads
        nothing else of the table."""

        def body(sides, key, columns, hashed, result: TableComparison) -> None:
            if key is None:
                seen = self._verify_rows(sides, table, columns, hashed, sorted(rows or (), key=str), result)
                unexplained = set(carried_hashes or ()) - seen
                if unexplained:
                    result.carried_whole = (
                        f"{len(unexplained)} row(s) that differed while live did not change since: compared whole"
                    )
                    result.differing_rows = []
                    self._compare_multiset(sides, table, hashed, mode, result)
                return
            keyed = self._keyed(sides, table, key, hashed, mode, result)
            ranges = [_Range(tuple(lo) if lo else None, tuple(hi) if hi else None) for lo, hi in (carried or [])]
            if ranges:
                keyed.run(ranges)
            keyed.verify_keys(sorted(keys or (), key=str))
            result.rows_source = result.rows_target = 0  # counted by the live comparison; here: what was verified

        result = self._with_sides(table, "tail", mode, body)
        return result

    def _verify_rows(
        self,
        sides: tuple[_Side, _Side],
        table: str,
        columns: list[dict[str, str]],
        hashed: sql.Composable,
        rows: list[tuple[str | None, ...]],
        result: TableComparison,
        batch: int = 2_000,
    ) -> set[str]:
        """A table without a key: how many copies of each captured row (by its columns' text) each side holds.
        Returns the hashes of the rows found on either side."""
        texts = sql.SQL(", ").join(sql.SQL("ferry_row.{}::text").format(sql.SQL(c["column"])) for c in columns)
        arrays = sql.SQL(", ").join(sql.SQL("{}::text[]").format(sql.Placeholder(f"c{i}")) for i in range(len(columns)))
        by = _prefilter_column(columns)
        seen: set[str] = set()
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            params = {f"c{i}": [r[i] for r in part] for i in range(len(columns))}
            prefilter: sql.Composable = sql.SQL("true")
            if by is not None:
                column = sql.SQL("ferry_row.{}").format(sql.SQL(columns[by]["column"]))
                prefilter = sql.SQL("({} = ANY({}::text[]::{}[])").format(
                    column, sql.Placeholder(f"c{by}"), sql.SQL(columns[by]["type"])
                )
                if any(r[by] is None for r in part):
                    prefilter = sql.Composed([prefilter, sql.SQL(" OR {} IS NULL").format(column)])
                prefilter = sql.Composed([prefilter, sql.SQL(")")])
            statement = sql.SQL(load_sql("compare_rows_of")).format(
                table=sql.SQL(table), row_hash=hashed, row_text=texts, arrays=arrays, prefilter=prefilter
            )
            result.ranges_compared += 1
            src, tgt = (
                {r["hash"]: r["copies"] for r in f.result()} for f in [s.submit(statement, params) for s in sides]
            )
            result.rows_verified += len(part)
            seen |= set(src) | set(tgt)
            self._name_rows(src, tgt, result)
        return seen

    def _compare_multiset(
        self,
        sides: tuple[_Side, _Side],
        table: str,
        hashed: sql.Composable,
        mode: Mode,
        result: TableComparison,
        name_rows: bool = True,
    ) -> None:
        template = "compare_count" if mode == "counts" else "compare_chunk"
        statement = sql.SQL(load_sql(template)).format(table=sql.SQL(table), predicate=sql.SQL("true"), row_hash=hashed)
        src, tgt = (f.result()[0] for f in [s.submit(statement) for s in sides])
        result.chunks = result.ranges_compared = 1
        result.rows_source, result.rows_target = src["rows"], tgt["rows"]
        result.equal_multiset = (src["rows"], src["hash"]) == (tgt["rows"], tgt["hash"])
        if result.equal_multiset or mode == "counts" or not name_rows:
            return
        statement = sql.SQL(load_sql("compare_multiset")).format(table=sql.SQL(table), row_hash=hashed)
        src_rows, tgt_rows = (
            {r["hash"]: r["copies"] for r in f.result()} for f in [s.submit(statement) for s in sides]
        )
        self._name_rows(src_rows, tgt_rows, result)

    def _name_rows(self, src_rows: dict[str, int], tgt_rows: dict[str, int], result: TableComparison) -> None:
        for row_hash in sorted(set(src_rows) | set(tgt_rows)):
            if src_rows.get(row_hash, 0) != tgt_rows.get(row_hash, 0):
                if len(result.differing_rows) >= self.diff_limit:
                    result.truncated = True
                    break
                result.differing_rows.append(
                    {"row_hash": row_hash, "source": src_rows.get(row_hash, 0), "target": tgt_rows.get(row_hash, 0)}
                )


class _KeyedTable:
    """The comparison of one table with a key: plan ranges, compare them, bisect those that differ."""

    def __init__(
        self,
        comparer: Comparer,
        sides: tuple[_Side, _Side],
        table: str,
        key_columns: list[str],
        key_types: list[str],
        hashed: sql.Composable,
        mode: Mode,
        result: TableComparison,
    ) -> None:
        self.c, self.sides, self.table, self.mode, self.result = comparer, sides, table, mode, result
        self.types = key_types
        # Ranges must hold the same rows on both sides: text keys order by "C" unless both collations match.
        collations = comparer.collations(sides)
        # Qualified: an unqualified name in ORDER BY would mean the select list's text form of the key.
        self.columns = [
            sql.SQL('ferry_row.{} COLLATE "C"').format(sql.SQL(col))
            if len(collations) > 1 and typ.startswith(COLLATABLE)
            else sql.SQL("ferry_row.{}").format(sql.SQL(col))
            for col, typ in zip(key_columns, key_types, strict=True)
        ]
        self.raw_columns = [sql.SQL(col) for col in key_columns]
        self.names = {
            "table": sql.SQL(table),
            "row_hash": hashed,
            "key_list": sql.SQL(", ").join(self.raw_columns),
            "key_order": sql.SQL(", ").join(self.columns),
            "key_text_list": sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in self.raw_columns),
            "key_text": (
                sql.SQL("{}::text").format(self.raw_columns[0])
                if len(self.raw_columns) == 1
                else sql.SQL("ROW({})::text").format(sql.SQL(", ").join(self.raw_columns))
            ),
        }

    def _values(self, keys: tuple[str, ...]) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t)) for v, t in zip(keys, self.types, strict=False)
        )

    def _predicate(self, r: _Range) -> sql.Composable:
        """A bound is a whole key or a prefix of it (the first pass cuts at first-column values): the key's
        first columns compared with it, in the key's order."""

        def keys(bound: tuple[str, ...]) -> sql.Composable:
            return sql.SQL("({})").format(sql.SQL(", ").join(self.columns[: len(bound)]))

        parts = []
        if r.lower is not None:
            parts.append(sql.SQL("{} >= ({})").format(keys(r.lower), self._values(r.lower)))
        if r.upper is not None:
            parts.append(sql.SQL("{} < ({})").format(keys(r.upper), self._values(r.upper)))
        return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")

    def _statement(self, name: str, r: _Range) -> sql.Composable:
        return sql.SQL(load_sql(name)).format(**self.names, predicate=self._predicate(r))

    def _measure(self, r: _Range, settings: dict[str, str] | None = None) -> tuple[Future, Future]:
        template = "compare_count" if self.mode == "counts" else "compare_chunk"
        statement = self._statement(template, r)
        self.result.ranges_compared += 1
        return self.sides[0].submit(statement, None, settings), self.sides[1].submit(statement, None, settings)

    def _parallel(self) -> dict[str, str]:
        """Settings of a statement that scans a whole table: PostgreSQL's parallel workers share the scan
        (``concurrency`` processes per side in all)."""
        return {"max_parallel_workers_per_gather": str(max(0, self.c.concurrency - 1))}

    def _plan_ranges(self) -> list[_Range]:
        """Key ranges of about ``chunk_rows`` rows, cut at values of the key's first column (so that one pass
        over the table can measure them all): arithmetically from its lowest and highest value when it is an
        integer, else at evenly spaced values of a sample of a few pages, sorted in the ranges' order."""
        statement = sql.SQL(load_sql("table_stats")).format(table=self.names["table"])
        estimated = self.sides[0].submit(statement, {"table": self.table}).result()[0]["estimated_rows"]
        self.estimated_rows = int(estimated or 0)
        wanted = max(self.c.concurrency, math.ceil(estimated / self.c.chunk_rows))
        if estimated < self.c.leaf_rows or wanted <= 1:
            return [_Range(None, None)]
        if self.types[0] in INTEGER_TYPES:
            statement = sql.SQL(load_sql("key_range")).format(table=self.names["table"], key=self.raw_columns[0])
            bounds = [f.result()[0] for f in [s.submit(statement) for s in self.sides]]
            lows = [b["low"] for b in bounds if b["low"] is not None]
            highs = [b["high"] for b in bounds if b["high"] is not None]
            if not lows:
                return [_Range(None, None)]
            low, high = min(lows), max(highs)
            step = max(1, math.ceil((high - low + 1) / wanted))
            cuts = [(str(v),) for v in range(low + step, high + 1, step)]
        else:
            percent = min(100.0, 100.0 * SAMPLE_ROWS / max(estimated, 1))
            statement = sql.SQL(load_sql("compare_sample")).format(table=self.names["table"], first=self.columns[0])
            sample = [row["cut"] for row in self.sides[0].submit(statement, {"percent": percent}).result()]
            distinct = list(dict.fromkeys(sample))  # sorted already; equal neighbours would make empty ranges
            picked = {distinct[len(distinct) * i // wanted] for i in range(1, wanted)} if distinct else set()
            cuts = [(v,) for v in distinct if v in picked]
        edges: list[tuple[str, ...] | None] = [None, *cuts, None]
        return [_Range(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]

    def _first_pass(self, ranges: list[_Range], bounded: bool = False) -> list[tuple[_Range, tuple[Future, Future]]]:
        """Every range of a planned table measured in one pass over it on each side (PostgreSQL's own
        parallel workers, ``concurrency`` processes per side, share the scan); each range's result is ready
        as a future, in the form ``_measure`` gives. ``bounded``: ``ranges`` are consecutive ranges of the table's,
        and the pass reads only from the first's lower bound to the last's upper one."""
        if len(ranges) == 1:
            return [(ranges[0], self._measure(ranges[0]))]
        cuts = [r.lower[0] for r in ranges[1:] if r.lower]
        statement = sql.SQL(load_sql("compare_buckets")).format(
            table=self.names["table"],
            first=self.columns[0],
            first_type=sql.SQL(self.types[0]),
            hash_sum=sql.SQL("''")
            if self.mode == "counts"
            else sql.SQL("coalesce(sum({}), 0)::text").format(self.names["row_hash"]),
            predicate=self._predicate(_Range(ranges[0].lower, ranges[-1].upper)) if bounded else sql.SQL("true"),
        )
        self.result.ranges_compared += len(ranges)
        # The planner cannot know the ranges are few and would sort the whole table by range: it must hash.
        settings = {"enable_sort": "off", **self._parallel()}
        passes = [s.submit(statement, {"cuts": cuts}, settings) for s in self.sides]
        empty = {"rows": 0, "hash": "" if self.mode == "counts" else "0"}

        def bucket(found: Future, i: int) -> Future:
            one: Future = Future()
            one.set_result([next((row for row in found.result() if row["bucket"] == i), empty)])
            return one

        return [(r, (bucket(passes[0], i), bucket(passes[1], i))) for i, r in enumerate(ranges)]

    def run(self, ranges: list[_Range] | None = None, at_leaf: Callable[[_Range], None] | None = None) -> None:
        """Compare ``ranges``, bisecting those that differ until a range is small enough for ``at_leaf`` (which
        names its keys by default). By default the whole table: measured whole first (one scan per side, the
        cost of the bare hashing query; tables are equal far more often than not), and only if it differs
        (or in ``counts`` mode, where a missing row and an extra one make the same total), its planned ranges
        in one more pass, then the bisection."""
        if ranges is None:
            if self.mode != "counts":
                src, tgt = (f.result()[0] for f in self._measure(_Range(None, None), self._parallel()))
                self.result.chunks = 1
                if _same(src, tgt):
                    self.result.rows_source, self.result.rows_target = src["rows"], tgt["rows"]
                    return
            ranges = self._plan_ranges()
            self.result.chunks = len(ranges)
            measured = self._first_pass(ranges)
        else:
            measured = [(r, self._measure(r)) for r in ranges]
        self._bisect(measured, {r for r, _ in measured}, at_leaf or self._compare_rows)

    def _bisect(self, pending: list[tuple[_Range, tuple[Future, Future]]], top: set[_Range], at_leaf: Any) -> None:
        while pending:
            r, (src_f, tgt_f) = pending.pop(0)
            src, tgt = src_f.result()[0], tgt_f.result()[0]
            if r in top:
                self.result.rows_source += src["rows"]
                self.result.rows_target += tgt["rows"]
            if (src["rows"], src["hash"]) == (tgt["rows"], tgt["hash"]):
                continue
            if self.result.differences >= self.c.diff_limit:
                self.result.truncated = True
                continue
            if max(src["rows"], tgt["rows"]) <= self.c.leaf_rows:
                at_leaf(r)
                continue
            middle = self._median(r, src["rows"], tgt["rows"])
            if middle is None or middle == r.lower:
                at_leaf(r)
                continue
            for half in (_Range(r.lower, middle), _Range(middle, r.upper)):
                pending.append((half, self._measure(half)))

    def _progress_passes(self, ranges: list[_Range]) -> list[list[_Range]]:
        """The planned ranges in consecutive groups, one pass each, when the comparer reports progress and the
        table is large and keyed by an integer (a pass over a key range is then an index range scan); else one
        group, one pass over the whole table."""
        if (
            self.c.progress is None
            or len(ranges) < 2
            or self.estimated_rows < self.c.progress_min_rows
            or self.types[0] not in INTEGER_TYPES
        ):
            return [ranges]
        size = math.ceil(len(ranges) / PROGRESS_PASSES)
        return [ranges[i : i + size] for i in range(0, len(ranges), size)]

    def run_live(self, retries: int, wait_s: float, max_carried: int) -> list[_Range] | None:
        """The live comparison: compare every range; compare again, up to ``retries`` times ``wait_s`` apart,
        those that differ (replication may be behind); bisect what still differs to small ranges, which are
        returned to be compared again in the freeze. None: too many, compare the table whole there."""
        ranges = self._plan_ranges()
        self.result.chunks = len(ranges)
        differing = []
        passes = self._progress_passes(ranges)
        started = time.monotonic()
        for group in passes:
            for r, (src_f, tgt_f) in self._first_pass(group, bounded=len(passes) > 1):
                src, tgt = src_f.result()[0], tgt_f.result()[0]
                self.result.rows_source += src["rows"]
                self.result.rows_target += tgt["rows"]
                if not _same(src, tgt):
                    differing.append(r)
            if len(passes) > 1 and self.c.progress is not None:
                self.c.progress(self.table, self.result.rows_source, self.estimated_rows, time.monotonic() - started)
        for _ in range(retries):
            if not differing:
                break
            time.sleep(wait_s)
            measured = [(r, self._measure(r)) for r in differing]
            differing = [r for r, (src_f, tgt_f) in measured if not _same(src_f.result()[0], tgt_f.result()[0])]
        carried: list[_Range] = []
        self._bisect([(r, self._measure(r)) for r in differing], set(), carried.append)
        if self.result.truncated or len(carried) > max_carried:
            return None
        return carried

    def verify_keys(self, keys: list[tuple[str | None, ...]], batch: int = 5_000) -> None:
        """Compare, row by row, exactly the rows of ``keys`` (each a tuple of key texts) on both sides."""
        columns = sql.SQL(", ").join(self.columns)
        arrays = sql.SQL(", ").join(
            sql.SQL("{}::{}[]").format(sql.Placeholder(f"k{i}"), sql.SQL(t)) for i, t in enumerate(self.types)
        )
        predicate = sql.SQL("({}) IN (SELECT * FROM unnest({}))").format(columns, arrays)
        statement = sql.SQL(load_sql("compare_rows")).format(**self.names, predicate=predicate)
        for start in range(0, len(keys), batch):
            part = keys[start : start + batch]
            params = {f"k{i}": [k[i] for k in part] for i in range(len(self.types))}
            self.result.ranges_compared += 1
            self._name_differences(*(f.result() for f in [s.submit(statement, params) for s in self.sides]))

    def _median(self, r: _Range, src_rows: int, tgt_rows: int) -> tuple[str, ...] | None:
        side, rows = (self.sides[0], src_rows) if src_rows >= tgt_rows else (self.sides[1], tgt_rows)
        found = side.submit(self._statement("compare_median", r), {"offset": rows // 2}).result()
        return tuple(found[0].values()) if found else None

    def _compare_rows(self, r: _Range) -> None:
        statement = self._statement("compare_rows", r)
        self._name_differences(*(f.result() for f in [s.submit(statement) for s in self.sides]))

    def _name_differences(self, src_rows: list[dict[str, Any]], tgt_rows: list[dict[str, Any]]) -> None:
        src = {row["key"]: row["hash"] for row in src_rows}
        tgt = {row["key"]: row["hash"] for row in tgt_rows}
        self.result.keys_verified += len(set(src) | set(tgt))
        named = set(self.result.missing_on_target) | set(self.result.extra_on_target) | set(self.result.changed)
        for key in sorted(set(src) | set(tgt)):
            if key in named:
                continue
            if self.result.differences >= self.c.diff_limit:
                self.result.truncated = True
                return
            if key not in tgt:
                self.result.missing_on_target.append(key)
            elif key not in src:
                self.result.extra_on_target.append(key)
            elif src[key] != tgt[key] and self.mode != "counts":
                self.result.changed.append(key)
