"""D-day on the stand, measured at two sizes in one run: the write freeze and the D-day total, by task.

Run by ``make bench-cutover``: for each size (``FERRY_BENCH_ROWS``, default ``1000000,10000000``)
a fresh stand is brought up with that many rows, then the stages run as in ``make rehearsal``
(on the stand's Airflow deployment, triggered through its REST API, the write load running at 50
writes/s, webhooks arriving, D-day's gates answered through the API). The breakdown comes from the D-day report (each task's start
and end); lost rows from a full comparison of every table after the cutover; lost webhooks from
what the providers got a 2xx for against what the new app received.

The last line is the summary: ``freeze_1m_s= freeze_10m_s= freeze_growth= lost_rows= lost_webhooks=
ok=``. ``ok=yes`` when every stage passed, nothing was lost, and the freeze at the largest size is at
most ``FERRY_BENCH_MAX_FREEZE_S`` (5 s) and at most ``FERRY_BENCH_MAX_GROWTH`` (1.3) times the smallest's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]

from rehearsal import STAGES, lost_rows, migrate, rehearsal_folder  # noqa: E402


def label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else str(rows)


def fresh_stand(rows: int) -> None:
    """A stand with ``rows`` rows, its environment (connections, plan) loaded into this process's."""
    from stand.core import Stand

    subprocess.run([sys.executable, "-m", "stand", "down"], check=True)
    subprocess.run([sys.executable, "-m", "stand", "up", "--rows", str(rows)], check=True)
    for line in Stand().env_file.read_text().splitlines():
        key, value = shlex.split(line)[-1].split("=", 1)
        os.environ[key] = value


def measure(rows: int) -> dict:
    folder = rehearsal_folder(f"-bench-cutover-{label(rows)}")
    print(f"\nD-day on the stand ({rows:,} rows, write load running); logs in {folder}", flush=True)
    result = migrate(folder, STAGES)
    report = result["d_day_report"]
    if not result["ok"] or report is None:
        print("a stage failed; see its log above")
        return {"ok": False, "freeze": float("nan"), "lost_rows": float("nan"), "lost_webhooks": float("nan")}
    timeline = report["timeline"]
    print(f"D-day by task ({len(timeline)} tasks, in start order):")
    for t in timeline:
        print(f"  {t['task']:<44} {t['seconds']:>8.2f} s")
    gates = sum(t["seconds"] for t in timeline if t["task"].startswith("gate_"))
    compare = sum(t["seconds"] for t in timeline if t["task"].startswith(("compare_changes", "compare_data")))
    live = sum(t["seconds"] for t in timeline if t["task"].startswith("compare_live"))
    lost = lost_rows()
    freeze, dday = report["freeze_window_s"], result["timings"]["ferry_d_day"]
    verified = sum(c.get("freeze_keys", 0) for c in report["comparison"])
    print(
        f"write freeze (fence to target writable): {freeze} s; D-day: {dday:.1f} s wall clock, "
        f"{gates:.1f} s of it waiting at gates; live comparison {live:.2f} s of task time (before the fence), "
        f"the freeze's drain and comparison {compare:.2f} s ({verified} keys verified)"
    )
    start, end = (datetime.fromisoformat(report[k]) for k in ("freeze_start", "freeze_end"))
    in_freeze = [t for t in timeline if start <= datetime.fromisoformat(t["start"]) <= end]
    gate = sum(t["seconds"] for t in in_freeze if t["task"].startswith("gate_"))
    print(
        "the freeze's tasks (each start to end; Airflow's scheduling between them is the rest): "
        + ", ".join(f"{t['task']} {t['seconds']:.2f} s" for t in in_freeze)
        + f"; of the freeze, {gate:.2f} s at the comparison gate (answered through the API as it came up)"
    )
    print(f"replication lag at the fence: {report['replication_lag_at_fence']}")
    print(f"rows lost per table: {lost}")
    print(
        f"rows={rows} freeze_s={freeze} dday_s={dday:.1f} live_compare_s={live:.2f} freeze_compare_s={compare:.2f} "
        f"freeze_gate_s={gate:.2f} keys_verified_in_freeze={verified} lost_rows={sum(lost.values())} "
        f"lost_webhooks={len(result['lost_webhooks'])} webhooks={len(result['acked'])} "
        f"writes={result['load'].get('committed', 0)}",
        flush=True,
    )
    return {
        "ok": True,
        "freeze": freeze,
        "lost_rows": sum(lost.values()),
        "lost_webhooks": len(result["lost_webhooks"]),
    }


def main() -> int:
    sizes = [int(s) for s in os.environ.get("FERRY_BENCH_ROWS", "1000000,10000000").split(",")]
    max_freeze = float(os.environ.get("FERRY_BENCH_MAX_FREEZE_S", "5"))
    max_growth = float(os.environ.get("FERRY_BENCH_MAX_GROWTH", "1.3"))
    results = {}
    for rows in sizes:
        fresh_stand(rows)
        results[rows] = measure(rows)
    small, large = results[min(sizes)], results[max(sizes)]
    growth = large["freeze"] / small["freeze"] if small["ok"] and large["ok"] else float("nan")
    lost = sum(r["lost_rows"] for r in results.values())
    lost_webhooks = sum(r["lost_webhooks"] for r in results.values())
    ok = (
        all(r["ok"] for r in results.values())
        and lost == 0
        and lost_webhooks == 0
        and large["freeze"] <= max_freeze
        and growth <= max_growth
    )
    freezes = " ".join(f"freeze_{label(rows)}_s={results[rows]['freeze']}" for rows in sizes)
    print(
        f"\n{freezes} freeze_growth={growth:.2f} lost_rows={lost} lost_webhooks={lost_webhooks} "
        f"ok={'yes' if ok else 'no'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
