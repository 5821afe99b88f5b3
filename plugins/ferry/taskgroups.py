"""Reusable pieces of the stage DAGs."""

from __future__ import annotations

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
