"""The users' downtime, measured at the users: the whole migration twice on fresh stands, with the AWS latency profile.

Run by ``make bench-downtime``. Each run: a fresh stand (``FERRY_BENCH_ROWS``, default 1,000,000 rows) brought up
with ``FERRY_STAND_PROFILE=aws`` (stand.profile: an RDS read replica takes 120 s, a Route53 change 30 s to INSYNC, a
Kubernetes rollout 15 s to ready), then every stage as ``make rehearsal`` runs it (the stand's Airflow deployment,
the write load at 50 writes/s through the old app's path, webhooks arriving, gates answered through the API).

1. **The switch at the pooler** (the stand's plan: ``source.pooler``): the old app keeps serving; its PgBouncer is
   paused for the freeze and resumed on the target. The users are the write load, which writes through that
   PgBouncer as the old app does: every write it attempted is a request; a write refused or failed is a failed
   request; the longest time between two committed writes is the longest pause a user saw.
2. **The fallback** (the same plan without ``source.pooler``): D-day stops the old app for the freeze, and the users
   are back only once DNS points at the new side and their resolver's cached answer expired: from the old app's
   stop to the DNS switch (the D-day report's ledger times) plus the record's TTL.

The last line: ``requests= failed= longest_write_pause_s= p99_ms= freeze_s= lost_rows= ok= fallback_downtime_s=``;
``ok=yes`` when both migrations passed, no request failed, no row was lost and the longest pause was at most
``FERRY_BENCH_MAX_PAUSE_S`` (2 s). Exits 1 otherwise. The pooled run also draws the users' view across the cutover
(``users-view.png`` in its logs folder: writes per half second and each write's latency, the pause and the freeze
shaded; ``bench/users_view.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "bench")]

import users_view  # noqa: E402
from cutover import fresh_stand  # noqa: E402
from rehearsal import STAGES, lost_rows, migrate, rehearsal_folder, reverse_caught_up  # noqa: E402


def run(variant: str, rows: int) -> dict:
    """The whole migration on a fresh stand; with ``variant`` fallback, on the stand's plan without its pooler."""
    os.environ["FERRY_STAND_PROFILE"] = "aws"
    fresh_stand(rows)
    if variant == "fallback":
        plan = yaml.safe_load(Path(os.environ["FERRY_PLAN"]).read_text())
        del plan["source"]["pooler"]
        path = Path(os.environ["FERRY_STAND_DIR"]) / "plan.fallback.yaml"
        path.write_text(yaml.safe_dump(plan, sort_keys=False))
        os.environ["FERRY_PLAN"] = str(path)
    folder = rehearsal_folder(f"-bench-downtime-{variant}")
    print(
        f"\n{variant}: the migration on a fresh stand ({rows:,} rows, AWS latency profile); logs in {folder}",
        flush=True,
    )
    result = migrate(folder, STAGES)
    report = result["d_day_report"] or {}
    reverse_caught_up()
    lost = sum(lost_rows().values())
    load = result["load"]
    users = report.get("users") or {}
    people = result.get("users") or {"requests": 0, "failed": 0, "longest_wait_s": None}
    waits = [w for w in (load.get("longest_pause_s"), people.get("longest_wait_s")) if w is not None]
    out = {
        "ok": result["ok"] and bool(report),
        # The write load (through the old app's PgBouncer) and the users following DNS (HTTP to either app).
        "requests": load.get("committed", 0) + load.get("refused", 0) + load.get("errors", 0) + people["requests"],
        "failed": load.get("refused", 0) + load.get("errors", 0) + people["failed"],
        "longest_write_pause_s": max(waits) if waits else None,
        "write_load": {k: load.get(k) for k in ("committed", "refused", "errors", "longest_pause_s", "p99_ms")},
        "users_following_dns": people,
        "p99_ms": load.get("p99_ms"),
        "freeze_s": report.get("freeze_window_s"),
        "lost_rows": lost,
        "lost_webhooks": len(result["lost_webhooks"]),
        "users": users,
        "dday_s": result["timings"].get("ferry_d_day"),
    }
    for t in report.get("timeline", []):
        print(f"  {t['task']:<44} {t['seconds']:>8.2f} s")
    recorded = Path(os.environ["FERRY_STAND_DIR"]) / "load-stats.requests.csv"
    if variant == "pooler" and report and recorded.exists():
        requests = users_view.read_requests(recorded)
        png = folder / "users-view.png"
        people_csv = folder / "users.csv"
        png.write_bytes(
            users_view.draw(
                requests,
                report,
                f"The users' view across the cutover ({rows:,} rows, AWS latency profile)",
                users=users_view.read_users(people_csv) if people_csv.exists() else None,
            )
        )
        out["chart"] = str(png)
        (folder / recorded.name).write_bytes(recorded.read_bytes())  # kept: the next run's stand starts afresh
        print(f"  the users' view: {png}")
    print(f"{variant}: {out}", flush=True)
    return out


def main() -> int:
    rows = int(os.environ.get("FERRY_BENCH_ROWS", "1000000"))
    max_pause = float(os.environ.get("FERRY_BENCH_MAX_PAUSE_S", "2"))
    pooled = run("pooler", rows)
    fallback = run("fallback", rows)
    from stand.profile import PROFILES

    users = fallback["users"]
    down = users.get("downtime_s")
    ttl = users.get("plus_dns_ttl_s") or PROFILES["aws"]["dns_ttl_s"]
    fallback_downtime = None if down is None else round(down + ttl, 1)
    print(
        f"\nswitch at the pooler: the old app's queries waited {pooled['users'].get('pause_s')} s in PgBouncer "
        f"(the freeze {pooled['freeze_s']} s); fallback: the old app down {down} s from its stop to the DNS switch, "
        f"plus the {ttl:g} s TTL for users who cached the old answer"
    )
    ok = (
        pooled["ok"]
        and fallback["ok"]
        and pooled["failed"] == 0
        and pooled["lost_rows"] == 0
        and fallback["lost_rows"] == 0
        and pooled["lost_webhooks"] == 0
        and fallback["lost_webhooks"] == 0
        and pooled["longest_write_pause_s"] is not None
        and pooled["longest_write_pause_s"] <= max_pause
    )
    print(
        f"requests={pooled['requests']} failed={pooled['failed']} "
        f"longest_write_pause_s={pooled['longest_write_pause_s']} p99_ms={pooled['p99_ms']} "
        f"freeze_s={pooled['freeze_s']} lost_rows={pooled['lost_rows'] + fallback['lost_rows']} "
        f"ok={'yes' if ok else 'no'} fallback_downtime_s={fallback_downtime}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
