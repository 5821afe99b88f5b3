"""Operators of the change capture (see :mod:`ferry.capture`): start it before the live comparison,
drain it, drop it after the cutover (and in ferry_rollback)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.capture import SIDES, CaptureStore, ChangeCapture, DrainResult, capture_id
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator


class CaptureOperator(FerryOperator):
    """Base: the capture of each side, and whether the plan uses one at all.

    :param stop_task_id: the run's CaptureStopOperator, whose having run means the capture ended.
    """

    def __init__(self, *, stop_task_id: str = "drop_change_capture", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stop_task_id = stop_task_id

    @cached_property
    def store(self) -> CaptureStore:
        return CaptureStore(self.plan)

    #: Both sides' stored states, read before the freeze by a task that drains inside it (cutover_at_pooler): the
    #: drain then does not read S3 while the users wait. Used once.
    preloaded_states: dict[str, Any] | None = None

    def preload_states(self) -> None:
        """Read both sides' stored states now (before the freeze), for the next :meth:`drain_captures`."""
        if self.in_use():
            self.preloaded_states = {side: self.store.load(side) for side in SIDES}
            if not all(self.preloaded_states.values()):
                self.preloaded_states = None  # the drain says why

    def captures(self) -> dict[str, ChangeCapture]:
        store = self.store
        return {
            "source": ChangeCapture(self.plan, "source", self.source, store),
            "target": ChangeCapture(self.plan, "target", self.target, store),
        }

    def in_use(self) -> bool:
        if self.plan.thresholds.compare_in_freeze == "full":
            self.log.info("thresholds.compare_in_freeze is 'full': no change capture; the freeze compares everything")
            return False
        return True

    def ended(self, context: Any) -> str | None:
        """Whether this run's capture was dropped already (its drop_change_capture ran): a re-run then
        neither starts nor drains one again, and what was stored stands. Read from that task's XCom, not
        from the ledger: this check runs inside the write freeze."""
        dropped = context["ti"].xcom_pull(task_ids=self.stop_task_id)
        return f"{self.stop_task_id} ran in this run ({dropped})" if dropped else None

    def drain_captures(self, context: Any) -> dict[str, Any]:
        """Drain both sides' captures at once (see CaptureDrainOperator) and log what each named. Each side's
        state as the drain left it is kept in ``drained_states`` (None when nothing was drained)."""
        self.drained_states: dict[str, Any] | None = None
        if not self.in_use():
            return {"drained": False}
        ended = self.ended(context)
        if ended:
            self.log.info("This run's change capture ended: %s; what it stored stands", ended)
            return {"drained": False, "ended": ended}
        captures = self.captures()
        with ThreadPoolExecutor(max_workers=2) as pool:  # inside the write freeze: both sides at once
            preloaded, self.preloaded_states = self.preloaded_states, None
            states = preloaded or dict(zip(SIDES, pool.map(lambda s: captures[s].store.load(s), SIDES), strict=True))
            if any(state is None for state in states.values()):
                if self.is_dry_run(context):
                    self.log.info("DRY RUN: no change capture was started; nothing to drain")
                    return {"drained": False}
                raise AirflowFailException("no change capture was started: run start_change_capture first")
            scope = self.scope_tables(self.source)
            results: list[DrainResult] = list(pool.map(lambda s: captures[s].drain(scope, states[s]), SIDES))
        self.drained_states = {r.side: r.state for r in results}
        for r in results:
            if r.broken:
                self.log.warning(
                    "%s: change capture BROKEN (%s): the freeze will compare every table whole", r.side, r.broken
                )
                continue
            self.log.info(
                "%s: drained %d changes up to %s in %.2f s; rows named per table: %s",
                r.side,
                r.changes,
                r.upto,
                r.seconds,
                ", ".join(f"{t} {n}" for t, n in sorted(r.tables.items())) or "none",
            )
        return {
            r.side: {"upto": r.upto, "changes": r.changes, "seconds": r.seconds, "broken": r.broken} for r in results
        }

    @staticmethod
    def slot_target(side: str, slot: str) -> Target:
        return Target.source(f"slot {slot}") if side == "source" else Target.target(f"slot {slot}")


class CaptureStartOperator(CaptureOperator):
    """Create the change capture slot on each side (before the live comparison). Inverse: CaptureStopOperator.

    A re-run keeps a slot already there: its capture began earlier, which only captures more.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.in_use():
            return {"capture": None}
        ended = self.ended(context)
        if ended:
            self.log.info("This run's change capture ended: %s; not started again", ended)
            return {"capture": None, "ended": ended}
        started: dict[str, Any] = {}
        for side, capture in self.captures().items():
            target = self.slot_target(side, capture.slot)
            if capture.slot_status() is None:
                if self.would(context, Action.CREATE_CAPTURE_SLOT, target, None, {"plugin": "test_decoding"}):
                    continue
                with self.changing(context, Action.CREATE_CAPTURE_SLOT, target, None, None) as change:
                    state, _ = capture.start()
                    change.after = {"plugin": "test_decoding", "created_lsn": state.created_lsn}
                self.log.info("%s: change capture slot %s created at %s", side, capture.slot, state.created_lsn)
            else:
                state, _ = capture.start()
                self.log.info("%s: change capture slot %s already captures since %s", side, capture.slot, state.lsn)
            started[side] = state.created_lsn
        if self.is_dry_run(context):
            return {"capture": None}
        states = {side: capture.store.load(side) for side, capture in self.captures().items()}
        return {"capture": capture_id(states), **started}


class CaptureDrainOperator(CaptureOperator):
    """Read what changed on both sides since the last drain, store the keys it names (S3), consume it.

    Before the fence (and after the go/no-go gate) it keeps the freeze's own drain small; the freeze's
    drain is the first step of ReplicationCompareChangesOperator.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        return self.drain_captures(context)


class CaptureStopOperator(CaptureOperator):
    """Drop the change capture slot on each side (D-day after the cutover; ferry_rollback). A slot nobody
    reads keeps WAL until the disk fills. Changes nothing when there is none."""

    def execute(self, context: Any) -> dict[str, bool]:
        dropped = {}
        for side, capture in self.captures().items():
            status = capture.slot_status()
            if status is None:
                self.log.info("%s: no change capture slot %s; nothing to drop", side, capture.slot)
                dropped[side] = False
                continue
            if status["active"]:
                raise AirflowFailException(
                    f"{side}: slot {capture.slot} is in use by another session; end it, then run this again"
                )
            target = self.slot_target(side, capture.slot)
            if self.would(context, Action.DROP_CAPTURE_SLOT, target, status["confirmed_flush_lsn"], None):
                dropped[side] = False
                continue
            with self.changing(context, Action.DROP_CAPTURE_SLOT, target, status["confirmed_flush_lsn"], None):
                capture.stop()
            self.log.info(
                "%s: dropped change capture slot %s (it kept %s bytes of WAL)",
                side,
                capture.slot,
                status["retained_bytes"],
            )
            dropped[side] = True
        return dropped
