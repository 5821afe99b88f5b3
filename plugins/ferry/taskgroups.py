"""Reusable pieces of the stage DAGs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from ferry.operators.preflight import PreflightRunCheckOperator, PreflightWriteReportOperator
from ferry.preflight import CHECKS


def preflight_checks() -> BaseOperator:
    """One task per pre-flight check and the report task after them, in the current DAG or task group."""
    checks = [
        PreflightRunCheckOperator(task_id=f"check_{name}", check=name, doc_md=fn.__doc__) for name, fn in CHECKS.items()
    ]
    report = PreflightWriteReportOperator(
        task_id="go_no_go_report",
        check_task_ids=[c.task_id for c in checks],
        doc_md="Gathers every check, writes the Markdown go/no-go report, and fails the run on NO-GO.",
    )
    checks >> report
    return report


def stage_dag_args(dag_id: str, doc: str, *tags: str, retry_delay_s: int = 30) -> dict[str, Any]:
    """What every stage DAG shares besides its (explicit) schedule: one run at a time, no catch-up, retries."""
    return {
        "dag_id": dag_id,
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["ferry", "stage", *tags],
        "doc_md": doc,
        "default_args": {"retries": 2, "retry_delay": timedelta(seconds=retry_delay_s)},
    }
