"""Rehearse the migration on the local stand: run each stage DAG with ``airflow dags test``.

Run by ``make rehearsal`` with the stand up and its env loaded. Each stage's full log and its
reports go to a fresh folder under ``$AIRFLOW_HOME/rehearsals/``; the summary says where.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

STAGES = ["ferry_preflight", "ferry_week_prior", "ferry_day_before"]


def run_stage(dag_id: str, folder: Path) -> tuple[bool, float, Path]:
    log = folder / f"{dag_id}.log"
    started = time.monotonic()
    with log.open("w") as out:
        airflow = str(Path(sys.executable).parent / "airflow")
        done = subprocess.run([airflow, "dags", "test", dag_id], stdout=out, stderr=subprocess.STDOUT, check=False)
    return done.returncode == 0, time.monotonic() - started, log


def main() -> int:
    home = Path(os.environ["AIRFLOW_HOME"])
    folder = home / "rehearsals" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True)
    os.environ["FERRY_REPORT_DIR"] = str(folder / "reports")
    print(f"Rehearsal with plan {os.environ['FERRY_PLAN']}; logs and reports in {folder}")
    ok = True
    for dag_id in STAGES:
        passed, seconds, log = run_stage(dag_id, folder)
        print(f"  {dag_id}: {'succeeded' if passed else 'FAILED'} in {seconds:.1f} s (log: {log})")
        ok = ok and passed
        if not passed:
            break
    reports = sorted((folder / "reports").rglob("*.md"), key=lambda p: p.stat().st_mtime)
    print("\nReports:")
    for report in reports:
        print(f"  {report.read_text().splitlines()[0].lstrip('# ')}: {report}")
    print("\nState of the migration:")
    for line in migration_state():
        print(f"  {line}")
    print(f"\nRehearsal {'passed' if ok else 'FAILED'}; logs and reports in {folder}")
    return 0 if ok else 1


def migration_state() -> list[str]:
    """Rows per table on both sides and the subscription's state, read from the stand."""
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "plugins")]
    from ferry.hooks.replication import ReplicationHook
    from ferry.plan import load_plan
    from ferry.preflight import in_scope

    plan = load_plan()
    source = ReplicationHook(plan.source.conn_id, plan.source.database)
    target = ReplicationHook(plan.target.conn_id, plan.target.database)
    lines = []
    target_tables = {t["qualified"] for t in target.get_tables(plan.replication.schemas)}
    for table in in_scope(plan, source.get_tables(plan.replication.schemas)):
        name = table["qualified"]
        copied = f"{target.count_rows(name):>9,}" if name in target_tables else f"{'-':>9}"
        lines.append(f"{name:<24} source {source.count_rows(name):>9,}  target {copied}")
    status = target.get_subscription_status(plan.subscription)
    slot = source.get_slot_status(plan.subscription)
    lines.append(
        f"subscription {plan.subscription}: "
        + (
            "none"
            if status is None
            else f"enabled={status['enabled']}, worker running={status['worker_pid'] is not None}, "
            f"lag {slot['lag_bytes'] if slot else '?'} bytes"
        )
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
