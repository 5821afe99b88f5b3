"""Benchmark Ferry's data comparison against reladiff and against the bare per-side hashing query.

Starts its own stand (two PostgreSQL 15 clusters on loopback), builds two identical tables of N
rows (a bigint key, text, numeric with decimals, timestamptz, jsonb, boolean), times, side by
side in one run:

- bare: ``count(*)`` and the sum of Ferry's own row hash over the whole table, on both servers at
  once (the limit: every row read and hashed once, no ranges, no bisection, no report); the
  same with the row's text hash is printed too, for reference;
- ferry: ``ferry.compare.Comparer`` with the plan's default concurrency;
- reladiff: the cross-database hashdiff CLI (installed in .venv-bench by ``make bench-venv``).

Then it plants one difference of each kind on the target and prints which each tool found.
Its last line is a key=value summary. Run: ``make bench-compare`` (or ``ROWS=200000 make bench-compare``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from psycopg import sql  # noqa: E402

from ferry.compare import Comparer, row_hash  # noqa: E402
from ferry.hooks.replication import ReplicationHook  # noqa: E402
from stand.control import down, up  # noqa: E402
from stand.core import Stand  # noqa: E402
from stand.services.postgres import PostgresPair  # noqa: E402

RELADIFF = ROOT / ".venv-bench" / "bin" / "reladiff"
TABLE = "bench.items"
BUILD = """
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.items (id bigint PRIMARY KEY, label text, amount numeric(14, 4), at timestamptz, doc jsonb, flag boolean);
INSERT INTO bench.items
SELECT i, 'item ' || i || ' ' || md5(i::text), round((i * 1.61803)::numeric % 100000, 4),
       timestamptz '2020-01-01 00:00+00' + i * interval '17 seconds',
       jsonb_build_object('sku', 'S' || i, 'qty', i % 50, 'tags', jsonb_build_array('x', i % 7)), i % 3 = 0
FROM generate_series(1, {rows}) AS i;
"""
BARE_TEXT = "SELECT count(*), sum(hashtextextended(ferry_row::text, 0)) FROM bench.items AS ferry_row"


def planted(rows: int) -> dict[str, tuple[str, str]]:
    """One difference of each kind: the key it touches and the statement planting it on the target."""
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
    return {
        "missing row": (k["missing"], f"DELETE FROM {TABLE} WHERE id = {k['missing']}"),
        "extra row": (str(rows + 1), f"INSERT INTO {TABLE} (id, label) VALUES ({rows + 1}, 'extra')"),
        "text": (k["text"], f"UPDATE {TABLE} SET label = label || '.' WHERE id = {k['text']}"),
        "numeric": (k["numeric"], f"UPDATE {TABLE} SET amount = amount + 0.0001 WHERE id = {k['numeric']}"),
        "timestamptz": (
            k["timestamptz"],
            f"UPDATE {TABLE} SET at = at + interval '1 microsecond' WHERE id = {k['timestamptz']}",
        ),
        "jsonb": (k["jsonb"], f"UPDATE {TABLE} SET doc = doc || '{{\"qty\": -1}}' WHERE id = {k['jsonb']}"),
        "boolean": (k["boolean"], f"UPDATE {TABLE} SET flag = NOT flag WHERE id = {k['boolean']}"),
    }


def timed(fn):
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def bare(hooks: tuple[ReplicationHook, ReplicationHook], statement) -> list:
    def one(hook):
        with hook.session() as conn:
            return conn.execute(statement).fetchone()

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, hooks))


def reladiff(stand: Stand, stats: bool) -> tuple[int, str]:
    urls = [f"postgresql://postgres@127.0.0.1:{stand.port(offset)}/saas" for offset in (1, 2)]
    argv = [
        str(RELADIFF),
        urls[0],
        TABLE,
        urls[1],
        TABLE,
        "-k",
        "id",
        "-c",
        "label",
        "-c",
        "amount",
        "-c",
        "at",
        "-c",
        "doc",
        "-c",
        "flag",
        "-j",
        "2",
    ] + (["-s"] if stats else [])
    # One password for both servers would be needed in the URL; the bench gives both clusters' through PGPASSFILE.
    done = subprocess.run(
        argv, capture_output=True, text=True, env=os.environ | {"PGPASSFILE": str(stand.dir / "pgpass")}
    )
    if done.returncode:
        raise RuntimeError(f"reladiff failed: {done.stderr[-2000:]}")
    return done.returncode, done.stdout


def reladiff_keys(output: str) -> set[str]:
    """Keys named in reladiff's diff lines: '- key, column, ...' (source) or '+ key, column, ...' (target)."""
    return {line[2:].split(",", 1)[0].strip() for line in output.splitlines() if line[:2] in ("- ", "+ ")}


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
        print(f"building two identical tables of {args.rows:,} rows ...", flush=True)
        with ThreadPoolExecutor(2) as pool:
            build_s = max(pool.map(lambda c: timed(lambda: _build(pair, stand, c, args.rows))[0], ("source", "target")))
        print(f"  built in {build_s:.1f} s")
        hooks = (ReplicationHook("ferry_source", "saas", 3600), ReplicationHook("ferry_target", "saas", 3600))
        comparer = Comparer(*hooks, concurrency=args.concurrency)

        hashed = row_hash(hooks[0].fetch("row_columns", table=TABLE))
        statement = sql.SQL("SELECT count(*), sum({}) FROM bench.items AS ferry_row").format(hashed)
        bare_s, sums = timed(lambda: bare(hooks, statement))
        assert sums[0] == sums[1], "the tables should be identical"
        bare_text_s, _ = timed(lambda: bare(hooks, BARE_TEXT))
        ferry_s, result = timed(lambda: comparer.compare_table(TABLE))
        assert result.equal, result
        reladiff_s, (_, stats) = timed(lambda: reladiff(stand, stats=True))
        print(f"\nidentical tables of {args.rows:,} rows (each tool once, one after the other, same servers):")
        print(
            f"  bare hashing query, both sides at once : {bare_s:7.2f} s   (same query hashing row text: {bare_text_s:.2f} s)"
        )
        print(f"  ferry ({result.chunks} key ranges, concurrency {args.concurrency}) : {ferry_s:7.2f} s")
        print(f"  reladiff (hashdiff, 2 threads)         : {reladiff_s:7.2f} s   [{' '.join(stats.split())[:80]}]")
        print(f"  reladiff / ferry = {reladiff_s / ferry_s:.2f}x;  ferry / bare = {ferry_s / bare_s:.2f}x")

        plants = planted(args.rows)
        with pair.admin(stand, "target") as conn:
            for _, statement in plants.values():
                conn.execute(statement)
        found_ferry = comparer.compare_table(TABLE)
        ferry_keys = {
            "missing": set(found_ferry.missing_on_target),
            "extra": set(found_ferry.extra_on_target),
            "changed": set(found_ferry.changed),
        }
        _, diff = reladiff(stand, stats=False)
        theirs = reladiff_keys(diff)
        print(f"\nplanted differences ({len(plants)}), found by key:")
        print(f"  {'kind':<12} {'key':>10}  ferry  reladiff")
        found = 0
        for kind, (key, _) in plants.items():
            category = "missing" if kind == "missing row" else "extra" if kind == "extra row" else "changed"
            ours = key in ferry_keys[category]
            found += ours
            print(f"  {kind:<12} {key:>10}  {'yes' if ours else 'NO':>5}  {'yes' if key in theirs else 'no':>8}")
        print(
            f"\nrows={args.rows} bare_s={bare_s:.2f} bare_text_s={bare_text_s:.2f} ferry_s={ferry_s:.2f} reladiff_s={reladiff_s:.2f} "
            f"ratio_vs_reladiff={reladiff_s / ferry_s:.2f} ratio_vs_bare={ferry_s / bare_s:.2f} "
            f"planted_found={found}/{len(plants)} reladiff_found={sum(k in theirs for k, _ in plants.values())}/{len(plants)}"
        )
        return 0 if found == len(plants) else 1
    finally:
        down(stand, quiet=True)


def _build(pair: PostgresPair, stand: Stand, cluster: str, rows: int) -> None:
    with pair.admin(stand, cluster) as conn:
        conn.execute(BUILD.format(rows=rows))
        conn.execute("VACUUM ANALYZE bench.items")


if __name__ == "__main__":
    sys.exit(main())
