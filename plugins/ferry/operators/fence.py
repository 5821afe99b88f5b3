"""Operators of the write fence on the source: on for the cutover, off again for a rollback."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.hooks.replication import FenceBlocked, fence_allowed_roles, fence_problems, fenced_tables
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator
from ferry.sensors.replication import ReplicationCaughtUpSensor

FENCE_LSN_KEY = "fence_lsn"


class ReplicationFenceSourceOperator(FerryOperator):
    """Fence the source against writes by every role but Ferry's own and ``source.keep_writing``;
    hand the fence's WAL position on.

    Afterwards no other role can INSERT, UPDATE, DELETE or TRUNCATE a table in scope, whatever its
    transaction mode or grants (the plan's ``app_roles`` and every writer it does not list), and the
    sessions of every role that could write are ended; replication keeps streaming.
    The fence's LSN goes to XCom under ``fence_lsn`` (for ReplicationCaughtUpSensor) and to the ledger.
    Inverse: ReplicationUnfenceSourceOperator.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        target = Target.source(plan.source.database)
        tables = fenced_tables(plan, self.source, self.scope_tables(self.source))
        allowed = fence_allowed_roles(plan)
        writers = self.source.get_writers(tables)
        problems = [
            f"role {r} (source.app_roles or source.keep_writing) does not exist on the source"
            for r in self.source.missing_roles([*plan.source.app_roles, *plan.source.keep_writing])
        ] + fence_problems(writers, allowed, plan.source.provider_superusers)
        if problems:
            raise AirflowFailException("the fence cannot hold: " + "; ".join(problems))
        roles = [w["role"] for w in writers if w["role"] not in allowed and not w["superuser"]]
        recorded = self.ledger.last(Action.FENCE_SOURCE, target)
        fenced = set(self.source.get_fenced_tables())
        if recorded and recorded.done and set(tables) <= fenced:
            self.log.info("The source is already fenced at %s; nothing to do", recorded.after["fence_lsn"])
            context["ti"].xcom_push(key=FENCE_LSN_KEY, value=recorded.after["fence_lsn"])
            return {"fence_lsn": recorded.after["fence_lsn"], "tables": len(tables)}
        wanted = {"tables": tables, "roles": roles, "allowed": allowed}
        if self.would(context, Action.FENCE_SOURCE, target, sorted(fenced), wanted):
            return {"fence_lsn": None, "tables": len(tables), "dry_run": True}
        with self.changing(context, Action.FENCE_SOURCE, target, sorted(fenced), wanted) as c:
            try:
                held = self.source.install_fence(tables, allowed)
            except FenceBlocked as err:
                raise AirflowFailException(f"{err}; the application still writes to the source") from err
            missing = set(tables) - set(self.source.get_fenced_tables())
            if missing:
                raise AirflowFailException(f"fence not in place on {sorted(missing)}; run ferry_rollback to unfence")
            fence_lsn = self.source.get_current_lsn()
            slot = self.source.get_slot_status(plan.subscription)
            lag = None if slot is None else slot["lag_bytes"]
            c.after = wanted | {"roles": held, "fence_lsn": fence_lsn, "lag_bytes_at_fence": lag}
        context["ti"].xcom_push(key=FENCE_LSN_KEY, value=fence_lsn)
        self.log.info(
            "Source fenced at %s: %d tables refuse writes by every role but %s (writers held: %s); "
            "replication %s bytes behind at the fence",
            fence_lsn,
            len(tables),
            ", ".join(allowed),
            ", ".join(held) or "none",
            lag,
        )
        return {"fence_lsn": fence_lsn, "tables": len(tables)}


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


class ReplicationFenceAndCatchUpOperator(ReplicationFenceSourceOperator, ReplicationCaughtUpSensor):
    """D-day's fence and its catch-up wait in one task: fence the source (ReplicationFenceSourceOperator), then
    wait until the target has confirmed the fence's WAL position (ReplicationCaughtUpSensor: in place for
    ``inline_wait_s``, then deferred to the triggerer, failing at once when replication breaks).

    One task, not two: each boundary between two tasks costs 0.3 to 0.6 s of scheduling, inside the write freeze.
    A re-run finds the fence in place and only waits. The fence's LSN goes to XCom under ``fence_lsn`` as the
    fence's does; the return value is the wait's (``waited_s``, the confirmed LSN). Inverse of the fence:
    ReplicationUnfenceSourceOperator.
    """

    template_fields = ()

    def execute(self, context: Any) -> dict[str, Any] | None:
        fenced = ReplicationFenceSourceOperator.execute(self, context)
        self.fence_lsn = fenced["fence_lsn"] or ""
        return ReplicationCaughtUpSensor.execute(self, context)
