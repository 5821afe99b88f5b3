"""Operators of the write fence on the source: on for the cutover, off again for a rollback."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from ferry.hooks.replication import FenceBlocked, fence_allowed_roles, fence_problems, fenced_tables
from ferry.ledger import Action, Target
from ferry.operators.base import FENCED_AT_KEY, FerryOperator
from ferry.operators.pooler import PoolerSteps
from ferry.sensors.replication import ReplicationCaughtUpSensor

FENCE_LSN_KEY = "fence_lsn"
TARGET_FENCE_LSN_KEY = "target_fence_lsn"


class ReplicationFenceOperator(FerryOperator):
    """Fence one side against writes by every role but Ferry's own (and, on the source, ``source.keep_writing``);
    hand the fence's WAL position on. One implementation for both directions: the source on D-day
    (ReplicationFenceSourceOperator), the target on the way back (ReplicationFenceTargetOperator).

    Afterwards no other role can INSERT, UPDATE, DELETE or TRUNCATE a table in scope or any partition of one,
    whatever its transaction mode or grants (the plan's ``app_roles`` and every writer it does not list); the
    sessions of every role that could write are ended, and those of clients sharing Ferry's own login;
    replication keeps streaming. Refuses (changing nothing) when a role named in the plan does not exist or the
    fence cannot hold a writer; checks every table carries it after the install. The fence's LSN goes to XCom and
    to the ledger.

    :param side: ``source`` or ``target``.
    """

    side = "source"

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        source = self.side == "source"
        hook, where = (self.source, plan.source) if source else (self.target, plan.target)
        target = Target.source(where.database) if source else Target.target(where.database)
        action = Action.FENCE_SOURCE if source else Action.FENCE_TARGET
        lsn_key = FENCE_LSN_KEY if source else TARGET_FENCE_LSN_KEY
        tables = fenced_tables(plan, hook, self.scope_tables(hook))
        allowed = fence_allowed_roles(plan) if source else [BaseHook.get_connection(where.conn_id).login]
        named = [*where.app_roles, *(plan.source.keep_writing if source else [])]
        writers = hook.get_writers(tables)
        problems = [
            f"role {r} ({self.side}.app_roles{' or source.keep_writing' if source else ''}) does not exist on the "
            f"{self.side}"
            for r in hook.missing_roles(named)
        ] + fence_problems(writers, allowed, where.provider_superusers)
        if problems:
            raise AirflowFailException(f"the fence on the {self.side} cannot hold: " + "; ".join(problems))
        roles = [w["role"] for w in writers if w["role"] not in allowed and not w["superuser"]]
        recorded = self.ledger.last(action, target)
        fenced = set(hook.get_fenced_tables())
        if recorded and recorded.done and set(tables) <= fenced:
            self.log.info("The %s is already fenced at %s; nothing to do", self.side, recorded.after["fence_lsn"])
            context["ti"].xcom_push(key=lsn_key, value=recorded.after["fence_lsn"])
            began = datetime.fromisoformat(recorded.at).timestamp()
            context["ti"].xcom_push(key=FENCED_AT_KEY, value=began)
            return {"fence_lsn": recorded.after["fence_lsn"], "tables": len(tables), "fenced_at": began}
        wanted = {"tables": tables, "roles": roles, "allowed": allowed}
        self.before_fence(context)
        if self.would(context, action, target, sorted(fenced), wanted):
            return {"fence_lsn": None, "tables": len(tables), "dry_run": True}
        with self.changing(context, action, target, sorted(fenced), wanted) as c:
            fenced_at = time.time()
            try:
                held = hook.install_fence(tables, allowed)
            except FenceBlocked as err:
                raise AirflowFailException(f"{err}; the application still writes to the {self.side}") from err
            missing = set(tables) - set(hook.get_fenced_tables())
            if missing:
                raise AirflowFailException(
                    f"fence not in place on {sorted(missing)} ({self.side}); run "
                    f"{'ferry_rollback' if source else 'ferry_rollback with undo_all_stages'} to lift it"
                )
            fence_lsn = hook.get_current_lsn()
            slot = hook.get_slot_status(plan.subscription if source else plan.reverse_subscription)
            lag = None if slot is None else slot["lag_bytes"]
            c.after = wanted | {"roles": held, "fence_lsn": fence_lsn, "lag_bytes_at_fence": lag}
        context["ti"].xcom_push(key=lsn_key, value=fence_lsn)
        context["ti"].xcom_push(key=FENCED_AT_KEY, value=fenced_at)
        self.log.info(
            "%s fenced at %s: %d tables refuse writes by every role but %s (writers held: %s); "
            "replication %s bytes behind at the fence",
            self.side.capitalize(),
            fence_lsn,
            len(tables),
            ", ".join(allowed),
            ", ".join(held) or "none",
            lag,
        )
        return {"fence_lsn": fence_lsn, "tables": len(tables), "fenced_at": fenced_at}

    def before_fence(self, context: Any) -> None:
        """Called once the fence's checks passed, just before it is installed (D-day pauses the pooler here; a
        dry run too: it says what it would do)."""


class ReplicationFenceSourceOperator(ReplicationFenceOperator):
    """Fence the source (D-day): see ReplicationFenceOperator. The fence's LSN goes to XCom under ``fence_lsn``
    (for ReplicationCaughtUpSensor). Inverse: ReplicationUnfenceSourceOperator."""

    side = "source"


class ReplicationFenceTargetOperator(ReplicationFenceOperator):
    """Fence the target: see ReplicationFenceOperator. The fence's LSN goes to XCom under ``target_fence_lsn``.
    Inverse: ReplicationUnfenceTargetOperator.

    Used twice: on D-day before the new side comes up (``before_promotion``: the new app's pods may be ready and
    still write nothing until the promotion lifts it), and as the way back's first step on the databases.

    :param before_promotion: D-day's: once the target was promoted (the forward subscription is gone) it serves the
        application, and a re-run of this task must not fence it again: it then changes nothing.
    """

    side = "target"

    def __init__(self, *, before_promotion: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.before_promotion = before_promotion

    def execute(self, context: Any) -> dict[str, Any]:
        if self.before_promotion and self.target.get_subscription_status(self.plan.subscription) is None:
            self.log.info(
                "Subscription %s is not on the target: it was promoted and serves the application. Nothing to fence "
                "(the fence is for the new side's start, before the promotion)",
                self.plan.subscription,
            )
            return {"fence_lsn": None, "promoted": True}
        return super().execute(context)


class ReplicationUnfenceSourceOperator(FerryOperator):
    """Lift the write fence (inverse of ReplicationFenceSourceOperator): the source is writable again."""

    def execute(self, context: Any) -> list[str]:
        target = Target.source(self.plan.source.database)
        fenced = self.source.get_fenced_tables()
        if not fenced:
            self.log.info("The source is not fenced; nothing to do")
            return []
        if self.would(context, Action.UNFENCE_SOURCE, target, fenced, []):
            return []
        with self.changing(context, Action.UNFENCE_SOURCE, target, fenced, []):
            try:
                tables = self.source.remove_fence()
            except FenceBlocked as err:
                raise AirflowFailException(str(err)) from err
        self.log.info("Fence lifted from %d tables", len(tables))
        return tables


class ReplicationFenceAndCatchUpOperator(ReplicationFenceSourceOperator, ReplicationCaughtUpSensor, PoolerSteps):
    """D-day's fence and its catch-up wait in one task: with ``source.pooler``, first PAUSE the old side's pooler
    (the old app's queries wait there, none fails: PoolerSteps); fence the source (ReplicationFenceSourceOperator),
    then wait until the target has confirmed the fence's WAL position (ReplicationCaughtUpSensor: in place for
    ``inline_wait_s``, then deferred to the triggerer, failing at once when replication breaks).

    One task, not two: each boundary between two tasks costs 0.3 to 0.6 s of scheduling, inside the write freeze.
    A re-run finds the fence in place and only waits. The fence's LSN goes to XCom under ``fence_lsn`` as the
    fence's does; the return value is the wait's (``waited_s``, the confirmed LSN). Inverse of the fence:
    ReplicationUnfenceSourceOperator.
    """

    template_fields = ()

    def __init__(self, *, pause_pooler: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pause_pooler_first = pause_pooler

    def before_fence(self, context: Any) -> None:
        """The pooler paused once the fence's checks passed (the application's queries wait from here), not
        before: the users' pause is as short as it can be. Not with ``pause_pooler=False`` (a DAG whose promotion
        does not resume it: the application's writes are then refused by the fence, as without a pooler)."""
        if self.pause_pooler_first:
            self.pause_pooler(context)

    def execute(self, context: Any) -> dict[str, Any] | None:
        fenced = ReplicationFenceOperator.execute(self, context)
        self.fence_lsn = fenced["fence_lsn"] or ""
        # The catch-up waits no longer than what is left of thresholds.max_freeze_s.
        self.freeze_budget_left_s = self.freeze_left_since(context, fenced.get("fenced_at"))
        self.refuse_past_freeze_budget(context, self.freeze_budget_left_s)
        return ReplicationCaughtUpSensor.execute(self, context)
