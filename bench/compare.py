"""Benchmark Ferry's data comparison against reladiff and against the bare per-side hashing query.

Starts its own stand (two PostgreSQL 15 clusters on loopback) and, for each of three tables, builds
it identically on both (``items``: N rows, a bigint key, text, numeric with decimals, timestamptz,
jsonb, boolean; ``pairs``: N rows, a composite ``(int, int)`` key whose first column passes from two to
three digits; ``wide``: N/4 rows of about 1 KB of text and jsonb), then times, side by side in one run:

Each time printed is the median of ``FERRY_BENCH_RUNS`` (3) runs, one tool after the other.

- bare: ``count(*)`` and the sum of Ferry's own row hash over the whole table, on both servers at
  once (the limit: every row read and hashed once, no ranges, no bisection, no report); the
  same with the row's text hash is printed too, for reference;
- ferry: ``ferry.compare.Comparer`` with the plan's default concurrency;
- reladiff: the cross-database hashdiff CLI (installed in .venv-bench by ``make bench-venv``);
- ferry live: D-day's live comparison, in one pass and in ten passes saying its progress after each (what a large
  table's live comparison does), to show what the progress lines cost.

Then it plants differences of each kind on the target and prints which each tool found by key.
Its last line is a key=value summary ending ``ok=``: yes when every planted difference was found by key
and, for every table, Ferry is at least ``FERRY_BENCH_MIN_VS_RELADIFF`` (5) times faster than reladiff
and at most ``FERRY_BENCH_MAX_VS_BARE`` (1.2) times the bare query; it exits non-zero otherwise. Run: ``make bench-compare`` (or ``ROWS=200000 make bench-compare``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from psycopg import sql  # noqa: E402

from ferry.compare import Comparer, row_hash  # noqa: E402
from ferry.hooks.replication import ReplicationHook  # noqa: E402
from stand.control import down, up  # noqa: E402
from stand.core import Stand  # noqa: E402
from stand.services.postgres import LOGINS, PostgresPair  # noqa: E402

RELADIFF = ROOT / ".venv-bench" / "bin" / "reladiff"
RUNS = int(os.environ.get("FERRY_BENCH_RUNS", "3"))  # each tool's time is the median of this many runs


@dataclass
class Table:
    """A table the bench builds identically on both servers, then plants differences in."""

    name: str
    key: list[str]
    columns: list[str]
    build: str  # {rows} is the row count
    share: int = 1  # the table gets rows // share rows

    def plants(self, rows: int) -> dict[str, tuple[str, str, str]]:
        """kind -> (category, key as Ferry names it, statement planting it on the target)."""
        return PLANTS[self.name](rows)


def _items(rows: int) -> dict[str, tuple[str, str, str]]:
    k = {
        name: str(rows * share // 100)
        for name, share in [
            ("missing", 11),
            ("text", 25),
            ("numeric", 35),
            ("timestamptz", 45),
            ("jsonb", 55),
            ("boolean", 65),
        ]
    }
    t = "bench.items"
    return {
        "missing row": ("missing", k["missing"], f"DELETE FROM {t} WHERE id = {k['missing']}"),
        "extra row": ("extra", str(rows + 1), f"INSERT INTO {t} (id, label) VALUES ({rows + 1}, 'extra')"),
        "text": ("changed", k["text"], f"UPDATE {t} SET label = label || '.' WHERE id = {k['text']}"),
        "numeric": ("changed", k["numeric"], f"UPDATE {t} SET amount = amount + 0.0001 WHERE id = {k['numeric']}"),
        "timestamptz": (
            "changed",
            k["timestamptz"],
            f"UPDATE {t} SET at = at + interval '1 microsecond' WHERE id = {k['timestamptz']}",
        ),
        "jsonb": ("changed", k["jsonb"], f"UPDATE {t} SET doc = doc || '{{\"qty\": -1}}' WHERE id = {k['jsonb']}"),
        "boolean": ("changed", k["boolean"], f"UPDATE {t} SET flag = NOT flag WHERE id = {k['boolean']}"),
    }


def _pairs(rows: int) -> dict[str, tuple[str, str, str]]:
    # 1,000 sequence numbers per tenant: tenants pass from two to three digits (the order a text cut breaks).
    tenants = max(2, rows // 1000)
    tenant, two, three = tenants // 2, min(99, tenants - 1), min(100, tenants)
    t = "bench.pairs"
    return {
        "missing row": ("missing", f"({tenant},7)", f"DELETE FROM {t} WHERE (tenant, seq) = ({tenant}, 7)"),
        "extra row": ("extra", "(0,1)", f"INSERT INTO {t} VALUES (0, 1, 'extra', 1)"),
        "text": ("changed", f"({two},500)", f"UPDATE {t} SET note = note || '.' WHERE (tenant, seq) = ({two}, 500)"),
        "numeric": (
            "changed",
            f"({three},500)",
            f"UPDATE {t} SET amount = amount + 0.01 WHERE (tenant, seq) = ({three}, 500)",
        ),
    }


def _wide(rows: int) -> dict[str, tuple[str, str, str]]:
    k = {
        name: str(rows * share // 100)
        for name, share in [("missing", 20), ("text", 40), ("jsonb", 60), ("scale", 80), ("sign", 90)]
    }
    t = "bench.wide"
    return {
        "missing row": ("missing", k["missing"], f"DELETE FROM {t} WHERE id = {k['missing']}"),
        "text (one byte in 700)": (
            "changed",
            k["text"],
            f"UPDATE {t} SET body = overlay(body placing 'X' from 350 for 1) WHERE id = {k['text']}",
        ),
        "jsonb": ("changed", k["jsonb"], f"UPDATE {t} SET doc = doc || '{{\"n\": 2}}' WHERE id = {k['jsonb']}"),
        "jsonb 1 as 1.0": (
            "changed",
            k["scale"],
            f"UPDATE {t} SET doc = doc || '{{\"n\": 1.0}}' WHERE id = {k['scale']}",
        ),
        # PostgreSQL's own jsonb (and numeric) hash ignores a number's sign: the comparison must not.
        "jsonb 1 as -1": ("changed", k["sign"], f"UPDATE {t} SET doc = doc || '{{\"n\": -1}}' WHERE id = {k['sign']}"),
    }


PLANTS = {"bench.items": _items, "bench.pairs": _pairs, "bench.wide": _wide}
TABLES = [
    Table(
        "bench.items",
        ["id"],
        ["label", "amount", "at", "doc", "flag"],
        """
CREATE TABLE bench.items (id bigint PRIMARY KEY, label text, amount numeric(14, 4), at timestamptz, doc jsonb, flag boolean);
INSERT INTO bench.items
SELECT i, 'item ' || i || ' ' || md5(i::text), round((i * 1.61803)::numeric % 100000, 4),
       timestamptz '2020-01-01 00:00+00' + i * interval '17 seconds',
       jsonb_build_object('sku', 'S' || i, 'qty', i % 50, 'tags', jsonb_build_array('x', i % 7)), i % 3 = 0
FROM generate_series(1, {rows}) AS i;
""",
    ),
    Table(
        "bench.pairs",
        ["tenant", "seq"],
        ["note", "amount"],
        """
CREATE TABLE bench.pairs (tenant int, seq int, note text, amount numeric(12, 2), PRIMARY KEY (tenant, seq));
INSERT INTO bench.pairs
SELECT 1 + (i - 1) / 1000, 1 + (i - 1) % 1000, 'note ' || md5(i::text), (i % 10000) / 100.0
FROM generate_series(1, {rows}) AS i;
""",
    ),
    Table(
        "bench.wide",
        ["id"],
        ["body", "doc"],
        """
CREATE TABLE bench.wide (id bigint PRIMARY KEY, body text, doc jsonb);
INSERT INTO bench.wide
SELECT i, repeat(md5(i::text), 22),
       jsonb_build_object('n', 1, 'sku', 'S' || i, 'notes', repeat(md5((i + 1)::text), 8), 'tags', jsonb_build_array('a', 'b', i % 9))
FROM generate_series(1, {rows}) AS i;
""",
        share=4,
    ),
]


def timed(fn, runs: int = 1):
    """The median time of ``runs`` runs of ``fn`` (this machine's timings vary from run to run), and its last result."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        result = fn()
        times.append(time.monotonic() - started)
    return sorted(times)[len(times) // 2], result


def bare(hooks: tuple[ReplicationHook, ReplicationHook], statement) -> list:
    def one(hook):
        with hook.session() as conn:
            return conn.execute(statement).fetchone()

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, hooks))


def reladiff(stand: Stand, table: Table, stats: bool) -> tuple[int, str]:
    urls = [f"postgresql://postgres@127.0.0.1:{stand.port(offset)}/saas" for offset in (1, 2)]
    argv = [str(RELADIFF), urls[0], table.name, urls[1], table.name]
    argv += [arg for k in table.key for arg in ("-k", k)]
    argv += [arg for c in table.columns for arg in ("-c", c)]
    argv += ["-j", "2"] + (["-s"] if stats else [])
    # One password for both servers would be needed in the URL; the bench gives both clusters' through PGPASSFILE.
    done = subprocess.run(
        argv, capture_output=True, text=True, env=os.environ | {"PGPASSFILE": str(stand.dir / "pgpass")}
    )
    if done.returncode:
        raise RuntimeError(f"reladiff failed: {done.stderr[-2000:]}")
    return done.returncode, done.stdout


def reladiff_keys(output: str, key_columns: int) -> set[str]:
    """Keys named in reladiff's diff lines ('- key, column, ...' from the source, '+ ...' from the target),
    spelled as Ferry names them ('(a,b)' for a composite key)."""
    found = set()
    for line in output.splitlines():
        if line[:2] in ("- ", "+ "):
            parts = [p.strip().strip("'") for p in line[2:].strip("()").split(",")]
            found.add(parts[0] if key_columns == 1 else "(" + ",".join(parts[:key_columns]) + ")")
    return found


def measure(stand: Stand, pair: PostgresPair, table: Table, rows: int, concurrency: int) -> dict:
    """One table: built on both servers, compared identical by each tool, then with differences planted."""
    rows = rows // table.share
    print(f"\n{table.name}: building two identical tables of {rows:,} rows ...", flush=True)
    with ThreadPoolExecutor(2) as pool:
        build_s = max(pool.map(lambda c: timed(lambda: _build(pair, stand, c, table, rows))[0], ("source", "target")))
    hooks = (ReplicationHook("ferry_source", "saas", 3600), ReplicationHook("ferry_target", "saas", 3600))
    comparer = Comparer(*hooks, concurrency=concurrency)
    size = hooks[0].fetch_one("database_size")
    hashed = row_hash(hooks[0].fetch("row_columns", table=table.name))
    statement = sql.SQL("SELECT count(*), sum({}) FROM {} AS ferry_row").format(hashed, sql.SQL(table.name))
    bare_s, sums = timed(lambda: bare(hooks, statement), RUNS)
    assert sums[0] == sums[1], "the tables should be identical"
    text = sql.SQL("SELECT count(*), sum(hashtextextended(ferry_row::text, 0)) FROM {} AS ferry_row")
    bare_text_s, _ = timed(lambda: bare(hooks, text.format(sql.SQL(table.name))), RUNS)
    ferry_s, result = timed(lambda: comparer.compare_table(table.name), RUNS)
    assert result.equal and result.rows_source == rows, result
    # D-day's live comparison of a large table says its progress: its one pass made in ten over consecutive key
    # ranges (an integer key), each followed by a progress line. What that costs against the one pass:
    live_one_s, one = timed(lambda: comparer.compare_live(table.name, retries=0, wait_s=0), RUNS)
    said: list[tuple] = []
    stepwise = Comparer(*hooks, concurrency=concurrency, progress=lambda *a: said.append(a), progress_min_rows=0)
    live_ten_s, ten = timed(lambda: stepwise.compare_live(table.name, retries=0, wait_s=0), RUNS)
    assert one.equal and ten.equal and ten.rows_source == one.rows_source == rows, (one, ten)
    passes = len(said) // RUNS or 1
    reladiff_s, (_, stats) = timed(lambda: reladiff(stand, table, stats=True), RUNS)
    print(f"  built in {build_s:.1f} s (database now {size['bytes'] / 1e6:.0f} MB on each side)")
    print(f"  bare hashing query, both sides at once : {bare_s:7.2f} s   (hashing the row's text: {bare_text_s:.2f} s)")
    print(f"  ferry ({result.chunks} key ranges, concurrency {concurrency}) : {ferry_s:7.2f} s")
    print(f"  reladiff (hashdiff, 2 threads)         : {reladiff_s:7.2f} s   [{' '.join(stats.split())[:80]}]")
    print(f"  reladiff / ferry = {reladiff_s / ferry_s:.2f}x;  ferry / bare = {ferry_s / bare_s:.2f}x")
    print(
        f"  ferry live, one pass: {live_one_s:.2f} s; in {passes} pass(es), its progress said after each: "
        f"{live_ten_s:.2f} s ({live_ten_s / live_one_s:.2f}x)"
    )

    plants = table.plants(rows)
    with pair.admin(stand, "target") as conn:
        for _, _, statement in plants.values():
            conn.execute(statement)
    found_ferry = comparer.compare_table(table.name)
    ours = {
        "missing": found_ferry.missing_on_target,
        "extra": found_ferry.extra_on_target,
        "changed": found_ferry.changed,
    }
    theirs = reladiff_keys(reladiff(stand, table, stats=False)[1], len(table.key))
    print(f"  planted differences ({len(plants)}), found by key:")
    print(f"    {'kind':<24} {'key':>12}  ferry  reladiff")
    found = found_theirs = 0
    for kind, (category, key, _) in plants.items():
        hit = key in ours[category]
        found += hit
        found_theirs += key in theirs
        print(f"    {kind:<24} {key:>12}  {'yes' if hit else 'NO':>5}  {'yes' if key in theirs else 'no':>8}")
    named = sum(len(v) for v in ours.values())
    if named != len(plants):
        print(f"  ferry named {named} keys for {len(plants)} planted: {ours}")
    return {
        "rows": rows,
        "bare_s": bare_s,
        "bare_text_s": bare_text_s,
        "ferry_s": ferry_s,
        "reladiff_s": reladiff_s,
        "live_one_s": live_one_s,
        "live_ten_s": live_ten_s,
        "found": found,
        "exact": named == len(plants),
        "planted": len(plants),
        "reladiff_found": found_theirs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("ROWS", "2000000")))
    parser.add_argument(
        "--concurrency", type=int, default=2, help="Ferry's key ranges at once per server (the plan's default)"
    )
    args = parser.parse_args()
    if not RELADIFF.exists():
        print(
            f"reladiff is not installed at {RELADIFF}: run make bench-venv (make bench-compare does)", file=sys.stderr
        )
        return 2
    stand = Stand(dir=Path("/tmp/ferry-bench-compare"), port_base=26320, rows=1000)
    down(stand, quiet=True)
    up(stand)
    try:
        for line in stand.env_file.read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            os.environ[name] = value.strip("'")
        (stand.dir / "pgpass").write_text(
            "".join(
                f"127.0.0.1:{stand.port(o)}:*:postgres:{stand.secret(c + '_superuser')}\n"
                for c, o in (("source", 1), ("target", 2))
            )
        )
        (stand.dir / "pgpass").chmod(0o600)
        pair = PostgresPair()
        print("each tool once per table, one after the other, on the same two servers")
        results = {t.name.split(".")[1]: measure(stand, pair, t, args.rows, args.concurrency) for t in TABLES}
        items = results["items"]
        line = (
            f"rows={args.rows} bare_s={items['bare_s']:.2f} bare_text_s={items['bare_text_s']:.2f} "
            f"ferry_s={items['ferry_s']:.2f} reladiff_s={items['reladiff_s']:.2f} "
            f"ratio_vs_reladiff={items['reladiff_s'] / items['ferry_s']:.2f} "
            f"ratio_vs_bare={items['ferry_s'] / items['bare_s']:.2f} "
            f"live_one_pass_s={items['live_one_s']:.2f} live_progress_s={items['live_ten_s']:.2f}"
        )
        for name in ("pairs", "wide"):
            r = results[name]
            line += (
                f" {name}_ferry_s={r['ferry_s']:.2f} {name}_reladiff_s={r['reladiff_s']:.2f} "
                f"{name}_ratio_vs_reladiff={r['reladiff_s'] / r['ferry_s']:.2f} "
                f"{name}_ratio_vs_bare={r['ferry_s'] / r['bare_s']:.2f}"
            )
        found = sum(r["found"] for r in results.values())
        planted = sum(r["planted"] for r in results.values())
        line += (
            f" planted_found={found}/{planted} "
            f"reladiff_found={sum(r['reladiff_found'] for r in results.values())}/{planted}"
        )
        min_vs_reladiff = float(os.environ.get("FERRY_BENCH_MIN_VS_RELADIFF", "5"))
        max_vs_bare = float(os.environ.get("FERRY_BENCH_MAX_VS_BARE", "1.2"))
        missed = [
            f"{name}: {what}"
            for name, r in results.items()
            for what, failed in (
                (
                    f"reladiff/ferry {r['reladiff_s'] / r['ferry_s']:.2f} < {min_vs_reladiff}",
                    r["reladiff_s"] / r["ferry_s"] < min_vs_reladiff,
                ),
                (
                    f"ferry/bare {r['ferry_s'] / r['bare_s']:.2f} > {max_vs_bare}",
                    r["ferry_s"] / r["bare_s"] > max_vs_bare,
                ),
            )
            if failed
        ]
        ok = found == planted and all(r["exact"] for r in results.values()) and not missed
        if missed:
            print("\nspeed targets missed (FERRY_BENCH_MIN_VS_RELADIFF, FERRY_BENCH_MAX_VS_BARE): " + "; ".join(missed))
        print("\n" + line + f" ok={'yes' if ok else 'no'}")
        return 0 if ok else 1
    finally:
        down(stand, quiet=True)


def _build(pair: PostgresPair, stand: Stand, cluster: str, table: Table, rows: int) -> None:
    with pair.admin(stand, cluster) as conn:
        conn.execute(f"SET ROLE {LOGINS[cluster]}")  # Ferry's login owns what it compares, as on the services
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        conn.execute(f"DROP TABLE IF EXISTS {table.name}")
        conn.execute(table.build.format(rows=rows))
        conn.execute(f"VACUUM ANALYZE {table.name}")


if __name__ == "__main__":
    sys.exit(main())
