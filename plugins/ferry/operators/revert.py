"""D-day's guardrail: the write freeze given back to the old side by itself when it fails or runs past its budget."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from ferry import report
from ferry.guards import new_side_exposure
from ferry.operators.base import FENCED_AT_KEY
from ferry.operators.fence import ReplicationUnfenceSourceOperator
from ferry.operators.pooler import PoolerSteps
from ferry.operators.vms import VmStartServicesOperator


class FerryRevertFreezeOperator(ReplicationUnfenceSourceOperator, VmStartServicesOperator, PoolerSteps):
    """Run when a task of D-day's write freeze failed (``one_failed`` on the fence, the comparison, the large
    objects' copy, the comparison's gate and the promotion), the catch-up past ``thresholds.max_freeze_s``
    included: the source unfenced (ReplicationUnfenceSourceOperator) and the old app's units started again
    (VmStartServicesOperator), each in the ledger, so the users are served by the old side within seconds, not
    when someone notices. Writes a report saying why (the tasks that failed, how long the freeze lasted against
    its budget, what it gave back); D-day still fails. The rest (the webhook route, the change capture, a
    subscription dropped by a promotion that failed halfway) is ``ferry_rollback``'s, as before.

    Never once D-day let the application reach the new side (deployments scaled up, DNS switched): then the new
    side may hold writes, and ``ferry_rollback_after_cutover`` is the way back. Skipped then, as on a re-run.
    """

    def __init__(self, *, fence_task_id: str = "fence_source_and_catch_up", **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "one_failed")
        super().__init__(**kwargs)
        self.fence_task_id = fence_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        plan, run_id = self.plan, context["run_id"]
        exposed = new_side_exposure(plan, self.ledger.records())
        if exposed is not None:
            raise AirflowSkipException(
                f"D-day let the application reach the new side ({exposed.action} {exposed.target.name} at "
                f"{exposed.at}): the new side may hold writes, so this is not the freeze's to revert; "
                "ferry_rollback_after_cutover brings the service back"
            )
        paused = plan.source.pooler is not None and self.pooler.entry()["paused"]
        if not self.source.get_fenced_tables() and not self.stopped_units() and not paused:
            raise AirflowSkipException(
                "nothing of the freeze to give back: the source is not fenced, no unit of the old app is stopped and "
                "the pooler is not paused (D-day stopped before them)"
            )
        failed = self.failed_tasks(context)
        fenced_at = context["ti"].xcom_pull(task_ids=self.fence_task_id, key=FENCED_AT_KEY)
        self.log.error(
            "The write freeze failed (%s): giving the service back to the old side",
            ", ".join(failed) or "a task of the freeze failed",
        )
        unfenced = ReplicationUnfenceSourceOperator.execute(self, context)  # the writes first
        unfenced_at = time.time()
        back_at = None
        if plan.source.pooler is not None:  # pointed at the source (Ferry never moved it before the promotion)
            self.point_pooler(context, "source")
            self.resume_pooler(context)
            back_at = time.time()  # the old app's queries go on from here
        started = VmStartServicesOperator.execute(self, context)
        started_at = back_at or time.time()
        since = None if fenced_at is None or not unfenced else float(fenced_at)
        freeze_s = None if since is None else round(unfenced_at - since, 3)
        back_s = None if since is None else round(started_at - since, 3)
        budget = plan.thresholds.freeze_budget_s
        data = {
            "plan": plan.name,
            "run_id": run_id,
            "dry_run": self.is_dry_run(context),
            "reverted_at": datetime.now(UTC).isoformat(),
            "failed_tasks": failed,
            "freeze_s": freeze_s,
            "old_app_started_s": back_s,
            "max_freeze_s": budget,
            "tables_unfenced": len(unfenced),
            "vm_hosts_started": started,
            "pooler_resumed": plan.source.pooler is not None,
        }
        lines = [
            f"# Ferry D-day reverted: {plan.name}: {run_id}",
            "",
            f"- Failed in the freeze: {', '.join(failed) or 'a task of the freeze (see the run)'}",
            f"- Write freeze: {freeze_s} s (fence to unfence), budget thresholds.max_freeze_s {budget:g} s; the old "
            f"app {'served through its pooler' if plan.source.pooler else 'units running'} again {back_s} s after "
            "the fence"
            if freeze_s is not None
            else "- Write freeze: the source was not fenced by this run, or already unfenced",
            f"- Given back: {len(unfenced)} table(s) unfenced on the source; "
            + (
                f"the pooler's {plan.source.pooler.database} resumed on the source"
                if plan.source.pooler
                else f"the old app's units started on {', '.join(started) or 'no host'}"
            ),
            "- Next: read the failed task's log; then trigger ferry_rollback (the webhook route, the change "
            "capture, and what else D-day changed), and D-day again once the cause is fixed.",
            "",
        ]
        path = report.write(plan, "d_day", context, "\n".join(lines), data, name="d_day_reverted", upload=True)
        self.log.error(
            "D-day reverted: the old side serves again (%d table(s) unfenced, freeze %s s of %g s); report: %s",
            len(unfenced),
            freeze_s,
            budget,
            path,
        )
        return data | {"report_path": str(path)}

    def failed_tasks(self, context: Any) -> list[str]:
        """The tasks of this run that failed (their states, read through the Task SDK)."""
        try:
            states = context["ti"].get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]])
        except Exception as exc:  # noqa: BLE001 (the report still says what it gave back)
            self.log.warning("Could not read this run's task states: %s", exc)
            return []
        found = states.get(context["run_id"], {})
        return sorted(task for task, state in found.items() if str(state) in ("failed", "TaskInstanceState.FAILED"))
