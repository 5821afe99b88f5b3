"""D-day's end of the write freeze with a switch at the pooler: one task, so no scheduling gap lengthens the users'
pause."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.ledger import Action, Target
from ferry.operators.base import FENCED_AT_KEY, STEPS_KEY
from ferry.operators.compare import ReplicationCompareChangesOperator
from ferry.operators.fence import ReplicationFenceAndCatchUpOperator
from ferry.operators.objects import ReplicationCopyLargeObjectsOperator
from ferry.operators.pooler import PoolerSteps
from ferry.operators.replication import ReplicationPromoteTargetOperator
from ferry.operators.reverse import ReplicationStartReverseOperator, ReplicationUnfenceTargetOperator


class ReplicationPromoteAtPoolerOperator(
    ReplicationPromoteTargetOperator, ReplicationStartReverseOperator, PoolerSteps
):
    """With ``source.pooler``, the end of the freeze and of the users' pause in one task:

    1. the promotion (ReplicationPromoteTargetOperator: the last check, the subscription dropped, the sequences set);
    2. the reverse replication's publication and slot on the target (from here every write the target takes is kept
       for the old source);
    3. the target's fence lifted (fence_target put it there before the new side came up);
    4. the old side's PgBouncer pointed at the target and resumed: the old app's waiting queries go on, on the new
       database (PoolerSteps);
    5. then the reverse subscription on the old source (it streams from the slot, losing nothing meanwhile).

    Each step is its own change in the ledger, with its inverse, and a re-run does only what is left. Each boundary
    between tasks would cost the waiting users 0.3 to 0.6 s. ``start_reverse_replication`` after it waits until the
    reverse replication streams.
    """

    _vm_ahead: Future[None] | None = None

    def open_vm_ahead(self) -> Future[None]:
        """Start opening the SSH connection the repoint needs, in a thread (its handshake, tenths of a second of
        CPU, is then not in the pause); once per task. The hook is made here: reading its Airflow connection is not
        for another thread."""
        if self._vm_ahead is None:
            pool = ThreadPoolExecutor(max_workers=1)
            self._vm_ahead = pool.submit(self.pooler.connect_vm, self.pooler.vm_hook())
            pool.shutdown(wait=False)
        return self._vm_ahead

    def execute(self, context: Any) -> dict[str, Any]:
        ssh = self.open_vm_ahead()
        try:
            promoted = ReplicationPromoteTargetOperator.execute(self, context)
            captured = self.create_reverse_capture(context)
            # The target refused the application's writes since fence_target (the new side came up before the
            # freeze); the old app's queries reach it once the pooler resumes, and the reverse slot now keeps them.
            unfenced = ReplicationUnfenceTargetOperator.execute(self, context)
            try:
                ssh.result()
            except Exception as err:  # noqa: BLE001 (the repoint opens its own, and says why it fails)
                self.log.warning("Could not open the SSH connection ahead (%s): the repoint opens its own", type(err))
            moved = self.point_pooler(context, "target")
        finally:
            try:
                ssh.result()  # never left half open behind the task
            except Exception:  # noqa: BLE001 (said above)
                pass
            self.pooler.close()
        resumed_at = self.resume_pooler(context)
        subscribed = self.subscribe_reverse(context)
        return promoted | {
            "reverse": captured + subscribed,
            "target_unfenced": len(unfenced),
            "pooler_repointed": moved,
            "pooler_resumed_at": resumed_at,
        }


class ReplicationCutoverAtPoolerOperator(
    ReplicationFenceAndCatchUpOperator,
    ReplicationCompareChangesOperator,
    ReplicationCopyLargeObjectsOperator,
    ReplicationPromoteAtPoolerOperator,
):
    """D-day's whole write freeze in one task, with ``source.pooler`` and no person inside the freeze
    (``thresholds.comparison_gate: auto``). From the pooler's PAUSE to its RESUME, no task boundary (each costs the
    waiting users 0.3 to 1 s of scheduling):

    1. PAUSE the old side's PgBouncer, fence the source, wait in place until the target confirmed the fence's WAL
       position, no longer than ``thresholds.max_freeze_s`` (ReplicationFenceAndCatchUpOperator; never deferred:
       the budget is seconds, a deferral costs seconds);
    2. verify every table by the rows changed since its live comparison, write the comparison report, fail on any
       difference or any table not verified (ReplicationCompareChangesOperator with ``compare_whole``);
    3. copy the large objects changed since ``copy_large_objects_ahead`` copied them before the freeze, verified by
       md5 (ReplicationCopyLargeObjectsOperator);
    4. the last check, the promotion, the reverse publication and slot, the pooler pointed at the target and
       RESUMEd, the reverse subscription (ReplicationPromoteAtPoolerOperator).

    No step of 2 to 4 starts past ``thresholds.max_freeze_s``; any failure before the promotion leaves the pooler
    paused on the source, and ``revert_freeze`` gives the service back. Each step is its own change in the ledger;
    a re-run after the promotion (the forward subscription dropped after the fence) does only what is left of 4.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("compare_whole", True)
        kwargs.setdefault("no_person_after", True)
        super().__init__(**kwargs)
        self.large_objects_task_id = self.task_id  # the last check verifies the objects this task copied

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        if self.promoted_after_fence():
            self.log.info("The target was promoted after the fence by an earlier try: only what is left of the switch")
            return {"promoted_earlier": True} | ReplicationPromoteAtPoolerOperator.execute(self, context)
        # Before the pause: the SSH connection for the repoint (and the file read), opened while the fence's checks
        # run; the change capture's stored states (the drain in the freeze then reads no S3).
        self.open_vm_ahead()
        self.preload_states()
        steps: list[dict[str, Any]] = []
        results: dict[str, Any] = {}

        def timed(step: str, run: Any) -> Any:
            start = datetime.now(UTC)
            try:
                results[step] = run(self, context)
                return results[step]
            finally:
                end = datetime.now(UTC)
                steps.append({"task": f"{self.task_id}: {step}", "start": start.isoformat(), "end": end.isoformat()})
                self.log.info("%s: %.3f s", step, (end - start).total_seconds())

        # The budget is seconds: the catch-up waits in place for all of it, never deferred (a deferral costs a
        # round trip through the triggerer and a second start of this task, both inside the users' pause).
        self.inline_wait_s = max(self.inline_wait_s, plan.thresholds.freeze_budget_s)
        try:
            caught_up = timed("fence_source_and_catch_up", ReplicationFenceAndCatchUpOperator.execute) or {}
            fenced_at = context["ti"].xcom_pull(task_ids=self.task_id, key=FENCED_AT_KEY) or time.time()
            # One after the other, in this thread: Airflow's calls (connections, XCom, the ledger) are not made from
            # two threads of a task (dag.test's in-process supervisor swaps a module global for each). The large
            # objects were copied before the freeze (copy_large_objects_ahead): here only what changed since.
            for step, run in (
                ("compare_changes", ReplicationCompareChangesOperator.execute),
                ("large_objects", ReplicationCopyLargeObjectsOperator.execute),
                ("promote_and_switch", ReplicationPromoteAtPoolerOperator.execute),
            ):
                self.refuse_past_freeze_budget(context, self.freeze_left_since(context, fenced_at))
                timed(step, run)
        finally:
            # After the pause (or the failure): the steps for the D-day report's timeline, and their results.
            context["ti"].xcom_push(key=STEPS_KEY, value=steps)
            for step in ("compare_changes", "large_objects"):
                if step in results:
                    context["ti"].xcom_push(key=step, value=results[step])
        return results["promote_and_switch"] | {"waited_s": caught_up.get("waited_s"), "caught_up": caught_up}

    def defer(self, **kwargs: Any) -> None:
        """Never: resumed after a deferral, the task would end after the catch-up, the cutover not done."""
        raise AirflowFailException(
            "the cutover at the pooler waits for the catch-up in place, within thresholds.max_freeze_s; it does "
            "not defer. revert_freeze gives the service back"
        )

    def promoted_after_fence(self) -> bool:
        """True when the forward subscription is gone and the ledger says this freeze dropped it (after the
        source's last fence): the cutover's first steps are done, and must not run again (the old app may be
        writing to the target through the pooler by now)."""
        plan = self.plan
        if self.target.get_subscription_status(plan.subscription) is not None:
            return False
        fenced = self.ledger.last(Action.FENCE_SOURCE, Target.source(plan.source.database))
        dropped = self.ledger.last(Action.DROP_SUBSCRIPTION, Target.target(plan.subscription))
        return bool(fenced and fenced.done and dropped and dropped.done and dropped.at > fenced.at)
