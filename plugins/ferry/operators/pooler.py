"""The switch at the pooler: the old side's PgBouncer paused for the write freeze, pointed at the target once it is
promoted, resumed. The old app keeps serving throughout; its queries wait in the pooler for the freeze, none fails.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ferry.hooks.pooler import PoolerError, PoolerHook, where
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator
from ferry.plan import Plan

#: XCom keys: when the pooler paused and resumed (epoch seconds), for the D-day report.
POOLER_PAUSED_AT_KEY = "pooler_paused_at"
POOLER_RESUMED_AT_KEY = "pooler_resumed_at"


def pooler_target(plan: Plan) -> Target:
    pooler = plan.source.pooler
    assert pooler is not None
    return Target.pooler(pooler.vm, pooler.database)


class PoolerSteps(FerryOperator):
    """The pooler's three changes, each idempotent and in the ledger; mixed into the operators that make them."""

    @cached_property
    def pooler(self) -> PoolerHook:
        return PoolerHook(self.plan)

    def pause_pooler(self, context: Any) -> float | None:
        """PAUSE the pooler's entry (nothing without a pooler, or when it is paused already); push when to XCom."""
        if self.plan.source.pooler is None:
            return None
        target, entry = pooler_target(self.plan), self.pooler.entry()
        if entry["paused"]:
            self.log.info("The pooler's %s is paused already; nothing to do", self.plan.source.pooler.database)
            return None
        if self.would(context, Action.PAUSE_POOLER, target, {"paused": False}, {"paused": True}):
            return None
        with self.changing(context, Action.PAUSE_POOLER, target, {"paused": False}, where(entry) | {"paused": True}):
            paused_at = time.time()
            try:
                took = self.pooler.pause(self.plan.source.pooler.pause_timeout_s)
            except PoolerError as err:
                raise AirflowFailException(str(err)) from err
        context["ti"].xcom_push(key=POOLER_PAUSED_AT_KEY, value=paused_at)
        self.log.info(
            "Pooler paused: the old app's queries wait in PgBouncer (%.3f s for the transactions in flight to end)",
            took,
        )
        return paused_at

    def wanted(self, side: str) -> dict[str, Any] | None:
        """Where the entry must point for ``side``: the target as the plan gives it; the source as the entry pointed
        before Ferry first repointed it (the ledger), or None when Ferry never did."""
        plan = self.plan
        pooler = plan.source.pooler
        assert pooler is not None
        if side == "target":
            conn = BaseHook.get_connection(plan.target.conn_id)
            return {
                "host": pooler.target_host or conn.host,
                "port": pooler.target_port or conn.port or 5432,
                "dbname": plan.target.database,
            }
        moved = [
            r
            for r in self.ledger.records()
            if r.action == Action.REPOINT_POOLER and r.target == pooler_target(plan) and r.done
        ]
        firsts = [r for r in moved if (r.after or {}).get("side") == "target"]
        return where(firsts[0].before) if firsts else None

    def point_pooler(self, context: Any, side: str) -> bool:
        """Point the pooler's entry at ``side`` (``target`` or ``source``); True when it changed."""
        wanted = self.wanted(side)
        if wanted is None:
            self.log.info("Ferry never pointed the pooler elsewhere: it still points at the source")
            return False
        entry = self.pooler.entry()
        if where(entry) == wanted:
            self.log.info("The pooler's entry points at the %s already (%s:%s)", side, wanted["host"], wanted["port"])
            return False
        target = pooler_target(self.plan)
        if self.would(context, Action.REPOINT_POOLER, target, where(entry), wanted | {"side": side}):
            return False
        with self.changing(context, Action.REPOINT_POOLER, target, where(entry), wanted | {"side": side}):
            try:
                self.pooler.repoint(wanted["host"], int(wanted["port"]), wanted["dbname"])
            except PoolerError as err:
                raise AirflowFailException(str(err)) from err
        self.log.info("Pooler pointed at the %s: %s:%s/%s", side, wanted["host"], wanted["port"], wanted["dbname"])
        return True

    def resume_pooler(self, context: Any) -> float | None:
        """RESUME the pooler's entry (nothing when it is not paused); push when to XCom."""
        if self.plan.source.pooler is None:
            return None
        entry, target = self.pooler.entry(), pooler_target(self.plan)
        if not entry["paused"]:
            self.log.info("The pooler is not paused; nothing to resume")
            return None
        if self.would(context, Action.RESUME_POOLER, target, {"paused": True}, {"paused": False}):
            return None
        with self.changing(context, Action.RESUME_POOLER, target, {"paused": True}, where(entry) | {"paused": False}):
            self.pooler.resume()
            resumed_at = time.time()
        context["ti"].xcom_push(key=POOLER_RESUMED_AT_KEY, value=resumed_at)
        self.log.info("Pooler resumed: the old app's queries go on, to %s:%s", entry["host"], entry["port"])
        return resumed_at


class PoolerPauseOperator(PoolerSteps):
    """PAUSE the old side's pooler (``source.pooler``): the old app's queries wait, none fails. Skipped without a
    pooler, and once the reverse replication is gone (ferry_rollback_after_cutover's way back is over: a re-run must
    not hold the application again). Inverse: PoolerSwitchOperator (``side="source"``)."""

    def execute(self, context: Any) -> float | None:
        if self.plan.source.pooler is None:
            raise AirflowSkipException("the plan declares no source.pooler")
        if self.source.get_subscription_status(self.plan.reverse_subscription) is None:
            self.log.info(
                "The reverse replication %s is gone: the way back is over (or never began); the pooler is not paused",
                self.plan.reverse_subscription,
            )
            return None
        return self.pause_pooler(context)


class PoolerSwitchOperator(PoolerSteps):
    """Point the old side's pooler at ``side`` and RESUME it: ``source`` gives the old database back (ferry_rollback,
    ferry_rollback_after_cutover), the entry as it was before Ferry's first repoint. (D-day's switch to the target is
    part of its promotion's task: ReplicationPromoteAtPoolerOperator.) Skipped without a pooler."""

    def __init__(self, *, side: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if side not in ("source", "target"):
            raise ValueError(f"side must be source or target, not {side!r}")
        self.side = side

    def execute(self, context: Any) -> dict[str, Any]:
        if self.plan.source.pooler is None:
            raise AirflowSkipException("the plan declares no source.pooler")
        moved = self.point_pooler(context, self.side)
        resumed_at = self.resume_pooler(context)
        return {"side": self.side, "repointed": moved, "resumed_at": resumed_at}
