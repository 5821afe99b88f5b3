"""Reusable pieces of the stage DAGs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Param

from ferry.operators.preflight import PreflightRunCheckOperator, PreflightWriteReportOperator
from ferry.plan import load_plan, plan_source, require_sections
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


def approval_gate(task_id: str, subject: str, body: str, on_reject: str) -> BaseOperator:
    """A human gate (Airflow's Required Actions): approve to go on; ``on_reject`` says what rejecting does."""
    from ferry.operators.gates import FerryApprovalOperator

    return FerryApprovalOperator(
        task_id=task_id,
        subject=subject,
        body=body,
        doc_md=f"Human gate: {subject} Approve to go on; Reject {on_reject}.",
    )


def dry_run_param() -> Param:
    """The trigger form's dry-run switch (a new Param each call: a run's values are set on its Param objects)."""
    return Param(
        False,
        type=["null", "boolean"],  # "null" too: the form does not mark it required (off is the normal answer)
        title="Dry run",
        description="Every task reports what it would change (in its log and the report) and changes nothing.",
    )


def cutover_params() -> dict[str, Param]:
    """D-day's trigger form besides the dry run: the tables to compare, the timeouts and how DNS moves
    (new Params each call). An empty timeout leaves the task's own (set where the DAG wires it)."""
    return {
        "tables": Param(
            [],
            type=["null", "array"],  # not marked required: empty is the normal answer
            items={"type": "string"},
            title="Tables to compare",
            description="schema.table or table names; empty: the plan's choice (thresholds.compare_mode).",
        ),
        "catch_up_timeout_s": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Replication catch-up timeout (s)",
            description="How long D-day's fence_source_and_catch_up waits for the target to confirm the fence; empty: 1800.",
        ),
        "rollout_timeout_s": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Kubernetes rollout timeout (s)",
            description="How long each rollout (deployments scaled up, PgBouncer restarted) may take; empty: 600.",
        ),
        "dns_weighted_steps": Param(
            [],
            type=["null", "array"],  # not marked required: empty is the normal answer
            items={"type": "integer", "minimum": 1, "maximum": 100},
            title="Weighted DNS switch (%)",
            description="Move the application's records in steps of answers to the new side, e.g. 10, 50, 100; "
            "empty: all at once. The webhook host always moves at once.",
        ),
        "dns_step_pause_s": Param(
            None,
            type=["null", "number"],
            minimum=0,
            title="Pause between weighted steps (s)",
            description="How long to watch the new side at each step; empty: 60.",
        ),
    }


#: The DAGs in the runbook's order, as the Airflow UI's DAG list shows them (it sorts by display name).
DISPLAY_NAMES = {
    "ferry_preflight": "Ferry 1 · Pre-flight",
    "ferry_week_prior": "Ferry 2 · Week prior",
    "ferry_schema_watch": "Ferry 3 · Schema watch",
    "ferry_day_before": "Ferry 4 · Day before",
    "ferry_d_day": "Ferry 5 · D-day",
    "ferry_rollback": "Ferry 6 · Rollback (before the cutover)",
    "ferry_rollback_after_cutover": "Ferry 7 · Rollback after the cutover",
    "ferry_decommission": "Ferry 8 · Decommission",
}


def ferry_dag_args(
    dag_id: str, doc: str, *tags: str, retry_delay_s: int = 30, params: dict[str, Param] | None = None
) -> dict[str, Any]:
    """What every Ferry DAG shares besides its (explicit) schedule: one run at a time, no catch-up, retries, docs,
    and a display name in the runbook's order."""
    return {
        "params": params or {},
        "dag_id": dag_id,
        "dag_display_name": DISPLAY_NAMES.get(dag_id, dag_id),
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["ferry", *tags],
        "doc_md": doc,
        "default_args": {"retries": 2, "retry_delay": timedelta(seconds=retry_delay_s)},
    }


def stage_dag_args(
    dag_id: str, doc: str, *tags: str, retry_delay_s: int = 30, params: dict[str, Param] | None = None
) -> dict[str, Any]:
    """A stage DAG's arguments: :func:`ferry_dag_args`, tagged ``stage``, with the trigger form's ``dry_run``.

    Parsing it checks that the plan has every section the stage needs (a local file: no database access),
    so a plan that lacks one shows as the DAG's import error naming it, before anything can run.
    """
    require_sections(load_plan(), dag_id, plan_source())
    return ferry_dag_args(
        dag_id, doc, "stage", *tags, retry_delay_s=retry_delay_s, params={"dry_run": dry_run_param(), **(params or {})}
    )
