"""The write load: inserts, updates and deletes at a steady rate through the application role.

Each operation is its own transaction, as a web request's would be. Refused writes (a fenced,
read-only source) and lost connections are counted and retried later, never fatal. Counts are
written to a JSON file every second and on SIGTERM, with what the users would feel: each write's latency
(``max_latency_s``, ``p99_ms``) and the longest time between two committed writes (``longest_pause_s``, ending at
``longest_pause_end``, epoch seconds): a write waiting at a paused pooler, or writes refused or failing. Every
write is also appended to ``<stats>.requests.csv`` (``done`` epoch seconds, ``latency_ms``, ``outcome``: ok, refused
or error), for the users' view across the cutover (``bench/users_view.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
from pathlib import Path

import psycopg

OPERATIONS = [
    (
        "insert_customer_event",
        30,
        "WITH c AS (INSERT INTO customers (email, name, country) VALUES (%(email)s, %(name)s, 'DE') RETURNING id) "
        "INSERT INTO events (customer_id, kind, payload) SELECT id, 'signup', %(payload)s::jsonb FROM c",
    ),
    (
        "insert_invoice",
        20,
        "INSERT INTO invoices (subscription_id, amount, tax, issued_at) "
        "SELECT id, amount, round(amount * 0.19, 4), now() FROM subscriptions WHERE id = %(pick)s",
    ),
    ("update_subscription", 20, "UPDATE subscriptions SET amount = amount + 1, status = 'active' WHERE id = %(pick)s"),
    ("pay_invoice", 10, "UPDATE invoices SET paid = true WHERE id = %(pick)s"),
    (
        "delete_event",
        10,
        "DELETE FROM events WHERE id = (SELECT id FROM events WHERE id >= %(pick)s ORDER BY id LIMIT 1)",
    ),
    (
        "record_usage",
        10,
        "INSERT INTO usage_records (customer_id, recorded_at, units) VALUES (%(pick)s, clock_timestamp(), 1) "
        "ON CONFLICT DO NOTHING",
    ),
    (
        "insert_page_view",
        10,
        "INSERT INTO page_views (customer_id, path, viewed_at) VALUES (%(pick)s, '/app/load', now())",
    ),
]


def run(dsn: str, rate: float, stats_file: Path, seed: int | None) -> None:
    rng = random.Random(seed)
    names, weights = [op[0] for op in OPERATIONS], [op[1] for op in OPERATIONS]
    sql = {op[0]: op[2] for op in OPERATIONS}
    stats = {
        "committed": 0,
        "refused": 0,
        "errors": 0,
        "by_operation": dict.fromkeys(names, 0),
        "rate": rate,
        "max_latency_s": 0.0,
        "p99_ms": None,
        "longest_pause_s": 0.0,
        "longest_pause_end": None,
    }
    latencies: list[float] = []
    requests = requests_file(stats_file)
    if not requests.exists():  # a restart of the unit appends
        requests.write_text("done,latency_ms,outcome\n")
    pending: list[str] = []
    last_commit: float | None = None
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = None
    max_id = 1000
    interval, next_at, last_write = 1.0 / rate, time.monotonic(), 0.0
    while not stopping:
        now = time.monotonic()
        if now < next_at:
            time.sleep(min(next_at - now, 0.2))
            continue
        next_at += interval
        if now - last_write > 1:
            write_stats(stats_file, stats, latencies, requests, pending)
            last_write = now
        try:
            if conn is None or conn.closed:
                # No server-side prepared statements: a pooler in transaction mode may hand each to another server.
                conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5, prepare_threshold=None)
                max_id = conn.execute("SELECT coalesce(max(id), 1000) FROM subscriptions").fetchone()[0]
            name = rng.choices(names, weights)[0]
            n = rng.randrange(1 << 40)
            began = time.monotonic()
            conn.execute(
                sql[name],
                {
                    "email": f"load{n}@example.com",
                    "name": f"Load {n}",
                    "payload": json.dumps({"n": n}),
                    "pick": rng.randint(1, max_id),
                },
            )
            done = time.monotonic()
            pending.append(f"{time.time():.3f},{(done - began) * 1000:.2f},ok\n")
            stats["committed"] += 1
            stats["by_operation"][name] += 1
            latencies.append(done - began)
            stats["max_latency_s"] = round(max(stats["max_latency_s"], done - began), 4)
            if last_commit is not None and done - last_commit > stats["longest_pause_s"]:
                stats["longest_pause_s"] = round(done - last_commit, 4)
                stats["longest_pause_end"] = time.time()
            last_commit = done
        except psycopg.errors.ReadOnlySqlTransaction:
            stats["refused"] += 1
            pending.append(f"{time.time():.3f},,refused\n")
        except psycopg.OperationalError:
            stats["errors"] += 1
            pending.append(f"{time.time():.3f},,error\n")
            conn = None
            time.sleep(0.2)
        except psycopg.Error:
            stats["errors"] += 1
            pending.append(f"{time.time():.3f},,error\n")
    write_stats(stats_file, stats, latencies, requests, pending)


def requests_file(stats_file: Path) -> Path:
    """Where the load appends each write (beside its stats file)."""
    return stats_file.with_name(stats_file.stem + ".requests.csv")


def write_stats(stats_file: Path, stats: dict, latencies: list[float], requests: Path, pending: list[str]) -> None:
    if pending:
        with requests.open("a") as out:
            out.writelines(pending)
        pending.clear()
    if latencies:
        ordered = sorted(latencies)
        stats["p99_ms"] = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)
    stats_file.write_text(json.dumps(stats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get("FERRY_LOAD_DSN"), help="default: $FERRY_LOAD_DSN")
    parser.add_argument("--rate", type=float, default=50, help="operations per second")
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="for a repeatable run (default: from the OS, so a restart does not replay the same unique emails)",
    )
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or set FERRY_LOAD_DSN")
    run(args.dsn, args.rate, args.stats, args.seed)


if __name__ == "__main__":
    main()
