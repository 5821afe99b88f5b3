"""D-day on the stand, measured: the write freeze and the D-day total, broken down by task.

Run by ``make bench-cutover`` on a fresh stand (1,000,000 rows by default; FERRY_STAND_ROWS) with
the stand's env loaded. The stages run as in ``make rehearsal`` (``airflow dags test``, the write
load running at 50 writes/s, webhooks arriving, D-day's gates answered through Airflow's REST
API). The breakdown comes from the D-day report (each task's start and end); lost rows from a full
comparison of every table after the cutover; lost webhooks from what the providers got a 2xx for
against what the new app received.

The last line is the summary: ``freeze_s= dday_s= lost_rows= lost_webhooks= ...``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]

from rehearsal import STAGES, lost_rows, migrate, rehearsal_folder  # noqa: E402


def main() -> int:
    folder = rehearsal_folder("-bench-cutover")
    rows = int(os.environ.get("FERRY_STAND_ROWS", "1000000"))
    print(f"D-day on the stand ({rows:,} rows in the largest table, write load running); logs in {folder}")
    result = migrate(folder, STAGES)
    report = result["d_day_report"]
    if not result["ok"] or report is None:
        print("a stage failed; see its log above")
        print("freeze_s=nan dday_s=nan lost_rows=nan lost_webhooks=nan ok=no")
        return 1
    timeline = report["timeline"]
    print(f"\nD-day by task ({len(timeline)} tasks, in start order):")
    for t in timeline:
        print(f"  {t['task']:<44} {t['seconds']:>8.2f} s")
    print("\nLongest:")
    for t in sorted(timeline, key=lambda t: -t["seconds"])[:5]:
        print(f"  {t['task']:<44} {t['seconds']:>8.2f} s")
    gates = sum(t["seconds"] for t in timeline if t["task"].startswith("gate_"))
    lost = lost_rows()
    freeze, dday = report["freeze_window_s"], result["timings"]["ferry_d_day"]
    print(
        f"\nwrite freeze (fence to target writable): {freeze} s; D-day: {dday:.1f} s wall clock "
        f"({report['dday_s']} s from its first task to the report, {gates:.1f} s of it waiting at gates)"
    )
    print(f"replication lag at the fence: {report['replication_lag_at_fence']}")
    print(f"rows lost per table: {lost}")
    ok = not sum(lost.values()) and not result["lost_webhooks"]
    print(
        f"freeze_s={freeze} dday_s={dday:.1f} dday_tasks_s={report['dday_s']} gates_s={gates:.1f} "
        f"lost_rows={sum(lost.values())} lost_webhooks={len(result['lost_webhooks'])} "
        f"webhooks={len(result['acked'])} writes={result['load'].get('committed', 0)} rows={rows} "
        f"ok={'yes' if ok else 'no'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
