"""What every Ferry operator shares: the plan, its secrets, the ledger and the two databases."""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ferry.guards import refuse_losing_new_side_writes
from ferry.hooks.replication import ReplicationHook
from ferry.ledger import Action, Ledger, LedgerRecord, Target
from ferry.plan import Plan, in_scope, load_runtime_plan
from ferry.redaction import plan_secrets, redact

#: The XCom key under which a fence task gives the time (epoch seconds) the write freeze began.
FENCED_AT_KEY = "fenced_at"


#: XCom key: the steps of a task that does several (a list of ``timing`` values), for the D-day report's timeline.
STEPS_KEY = "timing_steps"


class Timed:
    """Pushes the task's start and end to XCom (key ``timing``), for the D-day report's timeline.

    The start is kept across a deferral (a gate waiting for its answer, a deferred sensor), so the
    timing covers the whole wait.
    """

    def pre_execute(self, context: Any) -> None:
        ti = context["ti"]
        server = getattr(ti, "_ti_context_from_server", None)
        if not (server and server.next_method):  # a first start, not a resumption after a deferral
            ti.xcom_push(key="started", value=datetime.now(UTC).isoformat())

    def post_execute(self, context: Any, result: Any = None) -> None:
        ti = context["ti"]
        started = ti.xcom_pull(task_ids=ti.task_id, key="started", map_indexes=ti.map_index)
        end = datetime.now(UTC).isoformat()
        ti.xcom_push(
            key="timing", value={"task": ti.task_id, "map_index": ti.map_index, "start": started or end, "end": end}
        )


class FerryContext(Timed):
    """The plan, its secrets, the ledger and the two databases, made on first use inside ``execute``."""

    @cached_property
    def plan(self) -> Plan:
        return load_runtime_plan()

    @cached_property
    def secrets(self) -> list[str]:
        return plan_secrets(self.plan)

    @cached_property
    def ledger(self) -> Ledger:
        """The ledger as this task sees it: read from S3 once, plus what the task itself writes."""
        return Ledger(self.plan, self.secrets, cached=True)

    @cached_property
    def source(self) -> ReplicationHook:
        return ReplicationHook.for_side(self.plan, "source")

    @cached_property
    def target(self) -> ReplicationHook:
        return ReplicationHook.for_side(self.plan, "target")

    def scope_tables(self, hook: ReplicationHook) -> list[str]:
        """The quoted, schema-qualified names of the tables in scope on the server of ``hook``."""
        return [t["qualified"] for t in self.scope_table_rows(hook)]

    def scope_table_rows(self, hook: ReplicationHook) -> list[dict[str, Any]]:
        """The catalog rows (``tables.sql``) of the tables in scope on the server of ``hook``."""
        return in_scope(self.plan, hook.get_tables(self.plan.replication.schemas))

    @staticmethod
    def is_dry_run(context: Any) -> bool:
        """Whether this run was triggered as a dry run (the stage DAGs' ``dry_run`` param)."""
        return bool((context.get("params") or {}).get("dry_run"))

    def param(self, context: Any, name: str, default: Any) -> Any:
        """A trigger-form param of the run, or ``default`` when the DAG has no such param or it is empty."""
        value = (context.get("params") or {}).get(name)
        return default if value in (None, "", []) else value

    def would(self, context: Any, action: Action, target: Target, before: Any = None, after: Any = None) -> bool:
        """On a dry run: report the change this task would make here and return True (the caller skips it).

        On a real run: return False, and the caller makes the change. Every would-be change is also
        pushed to XCom (``would_change``) for the dry run's report.
        """
        if not self.is_dry_run(context):
            return False
        change = {"task": self.task_id, "action": action, "target": target, "before": before, "after": after}
        self.log.info(
            "DRY RUN, not changed: would %s",
            redact(f"{action} {target} (before {before}, after {after})", self.secrets),
        )
        self._would.append(json.loads(redact(json.dumps(change, default=str), self.secrets)))
        context["ti"].xcom_push(key="would_change", value=self._would)
        return True

    @cached_property
    def _would(self) -> list[dict[str, Any]]:
        return []

    @contextmanager
    def changing(
        self, context: Any, action: Action, target: Target, before: Any = None, after: Any = None
    ) -> Generator[Change, None, None]:
        """Record the intent of a change, let the caller make it, then record its outcome.

        The intent (with the expected ``after``) is in the ledger before the body runs, so a task that
        dies half-way leaves a record its inverse can act on. The body may set ``change.after`` to what
        actually resulted; the outcome is recorded only when the body returns without an error.
        """
        if self.is_dry_run(context):  # every change is guarded by would(); reaching here is a bug, so stop
            raise AirflowFailException(f"dry run: {self.task_id} was about to {action} {target}; nothing was changed")
        intent = self.ledger.intend(
            LedgerRecord(
                stage=context["dag"].dag_id,
                task=self.task_id,
                action=action,
                target=target,
                before=before,
                after=after,
                try_number=context["ti"].try_number,
                run_id=context["run_id"],
            )
        )
        change = Change(after)
        yield change
        self.ledger.complete(intent, change.after)
        self.log.info("Ledger: %s %s recorded (change %s)", action, target, intent.change_id[:8])

    def record(self, context: Any, action: Action, target: Target, before: Any = None, after: Any = None) -> None:
        """Record a change whose making is the record itself (a stage's completion, a slot left behind)."""
        with self.changing(context, action, target, before, after):
            pass


@dataclass
class Change:
    """A change being made: its body may set ``after`` to what actually resulted."""

    after: Any = None


def pull_all(context: Any, task_id: str, key: str = "return_value") -> list[Any]:
    """Every non-empty XCom value of ``task_id`` under ``key``, as a list also when the task is mapped once."""
    value = context["ti"].xcom_pull(task_ids=task_id, key=key)
    return [v for v in (value if isinstance(value, list) else [value]) if v]


class FerryOperator(FerryContext, BaseOperator):
    """Base of Ferry's operators. Hooks and the plan are made in ``execute``, never at parse time.

    :param only_if_param: run only when the run's param of this name is true; skipped otherwise
        (ferry_rollback's ``undo_all_stages`` steps).
    :param skip_if_param: skipped when the run's param of this name is true.
    :param refuse_while_reverse: fail, changing nothing, when the new side may hold writes this step would abandon
        (ferry_rollback's steps): while reverse replication runs (then ferry_rollback_after_cutover keeps them),
        after ferry_decommission, and once D-day let the application reach the promoted target without one
        (:func:`ferry.guards.refuse_losing_new_side_writes`).
    :param freeze_fence_task_id: D-day's fence task: this step of the write freeze refuses to start once the freeze
        has lasted ``thresholds.max_freeze_s`` (while the forward subscription still exists: a re-run after the
        cutover is not in a freeze).
    """

    # Without an __init__ of its own, a mapped subclass gets inlets=None from partial() (Airflow 3.3).
    def __init__(
        self,
        *,
        only_if_param: str | None = None,
        skip_if_param: str | None = None,
        refuse_while_reverse: bool = False,
        freeze_fence_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.only_if_param, self.skip_if_param = only_if_param, skip_if_param
        self.refuse_while_reverse = refuse_while_reverse
        self.freeze_fence_task_id = freeze_fence_task_id

    def freeze_left_s(self, context: Any, fence_task_id: str) -> float | None:
        """Seconds left of D-day's freeze budget (``thresholds.max_freeze_s``, from the fence task's ``fenced_at``
        XCom), or None when there is no freeze to guard: no fence time, a dry run, or the forward subscription
        gone (the freeze ended with the promotion; a re-run comes after it)."""
        return self.freeze_left_since(context, context["ti"].xcom_pull(task_ids=fence_task_id, key=FENCED_AT_KEY))

    def freeze_left_since(self, context: Any, fenced_at: float | None) -> float | None:
        """:meth:`freeze_left_s` for a freeze that began at ``fenced_at`` (epoch seconds)."""
        if fenced_at is None or self.is_dry_run(context):
            return None
        if self.target.get_subscription_status(self.plan.subscription) is None:
            return None
        return self.plan.thresholds.freeze_budget_s - (time.time() - float(fenced_at))

    def refuse_past_freeze_budget(self, context: Any, left: float | None) -> None:
        if left is not None and left <= 0:
            budget = self.plan.thresholds.freeze_budget_s
            raise AirflowFailException(
                f"the write freeze has lasted {budget - left:.1f} s, past thresholds.max_freeze_s ({budget:g} s): "
                f"{self.task_id} does not start. revert_freeze gives the service back to the old side (the source "
                "unfenced, the old app's units started); find out why the freeze was slow (the catch-up's lag at "
                "the fence, the comparison's report), then run ferry_rollback and D-day again"
            )

    def pre_execute(self, context: Any) -> None:
        params = context.get("params") or {}
        if self.only_if_param and not params.get(self.only_if_param):
            raise AirflowSkipException(f"skipped: trigger with {self.only_if_param} to run this step")
        if self.skip_if_param and params.get(self.skip_if_param):
            raise AirflowSkipException(f"skipped: not needed when triggered with {self.skip_if_param}")
        if self.refuse_while_reverse:
            refuse_losing_new_side_writes(self)
        if self.freeze_fence_task_id:
            self.refuse_past_freeze_budget(context, self.freeze_left_s(context, self.freeze_fence_task_id))
        super().pre_execute(context)
