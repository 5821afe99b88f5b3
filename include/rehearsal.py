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

STAGES = ["ferry_preflight", "ferry_week_prior"]


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
    reports = sorted((folder / "reports").rglob("*.md"))
    for report in reports:
        print(f"\n--- {report} ---\n{report.read_text()}")
    verdict = reports and reports[-1].read_text().splitlines()[0]
    print(f"Rehearsal {'passed' if ok else 'FAILED'}: {verdict or 'no report written'}")
    print(f"Report: {reports[-1] if reports else '-'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
