"""Operators of Postgres logical replication: publication, subscription, refresh and slots.

Each forward step has a named inverse and records its intent in the ledger before acting.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from ferry.capture import SIDES, CaptureStore, ChangeCapture
from ferry.hooks.postgres import subscription_conninfo
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator
from ferry.operators.objects import large_object_differences
from ferry.operators.sequences import ReplicationSyncSequencesOperator


class ReplicationCreatePublicationOperator(FerryOperator):
    """Publish exactly the tables in scope on the source (created, or altered to the scope).

    Tables added to the source since a first run are added by a re-run; ReplicationRefreshSubscriptionOperator
    then copies their rows. Inverse: ReplicationDropPublicationOperator.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        publication = self.plan.publication
        tables = self.scope_tables(self.source)
        if not tables:
            raise AirflowFailException("no table in scope on the source: check replication.schemas and tables")
        before = self.source.get_publication_tables(publication)
        if before == sorted(tables) and self.source.publishes_via_root(publication):
            self.log.info("Publication %s already publishes the %d tables in scope", publication, len(tables))
            return {"publication": publication, "tables": len(tables), "done": "unchanged"}
        if self.would(context, Action.CREATE_PUBLICATION, Target.source(publication), before, tables):
            return {"publication": publication, "tables": len(tables), "done": "dry run"}
        with self.changing(context, Action.CREATE_PUBLICATION, Target.source(publication), before, tables):
            done = self.source.create_publication(publication, tables)
        self.log.info("Publication %s of %d tables: %s", publication, len(tables), done)
        return {"publication": publication, "tables": len(tables), "done": done}


class ReplicationDropPublicationOperator(FerryOperator):
    """Drop the publication on the source (inverse of ReplicationCreatePublicationOperator)."""

    def execute(self, context: Any) -> bool:
        publication = self.plan.publication
        before = self.source.get_publication_tables(publication)
        if before is None:
            self.log.info("Publication %s does not exist; nothing to do", publication)
            return False
        if self.would(context, Action.DROP_PUBLICATION, Target.source(publication), before):
            return False
        with self.changing(context, Action.DROP_PUBLICATION, Target.source(publication), before, None):
            self.source.drop_publication(publication)
        self.log.info("Dropped publication %s", publication)
        return True


class ReplicationCreateSubscriptionOperator(FerryOperator):
    """Create the subscription on the target; it copies existing rows, then streams changes.

    Inverse: ReplicationDropSubscriptionOperator. The subscription's connection string (with its
    password) lives only in the target's catalog, never in logs, XComs or the ledger.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        target = Target.target(plan.subscription)
        if self.target.get_subscription_status(plan.subscription) is not None:
            self.log.info("Subscription %s already exists; nothing to do", plan.subscription)
            return {"created": False}
        publisher = BaseHook.get_connection(plan.replication.publisher_conn_id or plan.source.conn_id)
        after = {"publication": plan.publication, "slot": plan.subscription, "publisher": publisher.host}
        if self.would(context, Action.CREATE_SUBSCRIPTION, target, None, {"publication": plan.publication}):
            return {"created": False, "dry_run": True}
        conninfo = subscription_conninfo(publisher, plan.source.database, plan.subscription)
        with self.changing(context, Action.CREATE_SUBSCRIPTION, target, None, after):
            self.target.create_subscription(plan.subscription, plan.publication, conninfo)
        self.log.info("Created subscription %s to %s on %s", plan.subscription, plan.publication, publisher.host)
        return {"created": True}


class ReplicationRefreshSubscriptionOperator(FerryOperator):
    """Subscribe to the tables added to the publication since the subscription was created, copying their rows.

    Changes nothing when the subscription already covers every published table.
    """

    def execute(self, context: Any) -> list[str]:
        plan = self.plan
        if self.target.get_subscription_status(plan.subscription) is None:
            self.log.info(
                "No subscription %s (not created yet, or dropped at the cutover): nothing to refresh", plan.subscription
            )
            return []
        published = set(self.source.get_publication_tables(plan.publication) or [])
        subscribed = {t["qualified"] for t in self.target.get_subscription_tables(plan.subscription)}
        missing = sorted(published - subscribed)
        if not missing:
            self.log.info("Subscription %s covers all %d published tables", plan.subscription, len(published))
            return []
        target = Target.target(plan.subscription)
        if self.would(context, Action.REFRESH_SUBSCRIPTION, target, sorted(subscribed), sorted(published)):
            return missing
        with self.changing(context, Action.REFRESH_SUBSCRIPTION, target, sorted(subscribed), sorted(published)):
            self.target.refresh_subscription(plan.subscription)
        self.log.info("Subscription %s refreshed; %d table(s) added: %s", plan.subscription, len(missing), missing)
        return missing


class _Drained:
    """A capture store holding the states a drain just left (read from memory, not S3 again)."""

    def __init__(self, states: dict[str, Any]) -> None:
        self.states = states

    def load(self, side: str) -> Any:
        return self.states.get(side)


class ReplicationDropSubscriptionOperator(FerryOperator):
    """Drop the subscription on the target, also when the source is unreachable.

    When it is, the slot is detached first and left on the source; the ledger records it as
    ``orphan_slot`` and ReplicationDropOrphanSlotOperator drops it once the source answers.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        status = self.target.get_subscription_status(plan.subscription)
        if status is None:
            self.log.info("Subscription %s does not exist; nothing to do", plan.subscription)
            return {"dropped": False}
        if self.would(context, Action.DROP_SUBSCRIPTION, Target.target(plan.subscription), status):
            return {"dropped": False, "dry_run": True}
        try:
            self.source.fetch("ping")
            reachable = True
        except Exception as exc:  # noqa: BLE001 - any failure to reach the source means: detach the slot
            self.log.warning("The source does not answer (%s): detaching the slot before dropping", exc)
            reachable = False
        if not reachable:  # recorded first: once detached, only the ledger remembers the slot
            self.record(
                context, Action.ORPHAN_SLOT, Target.source(plan.subscription), None, {"slot": plan.subscription}
            )
        with self.changing(context, Action.DROP_SUBSCRIPTION, Target.target(plan.subscription), status, None):
            self.target.drop_subscription(plan.subscription, publisher_reachable=reachable)
        self.log.info("Dropped subscription %s%s", plan.subscription, "" if reachable else "; its slot awaits a drop")
        return {"dropped": True, "slot_left_on_source": not reachable}


class ReplicationPromoteTargetOperator(ReplicationDropSubscriptionOperator, ReplicationSyncSequencesOperator):
    """The end of D-day's write freeze, in one task: drop the subscription (ReplicationDropSubscriptionOperator),
    then set every sequence on the target past the source's (ReplicationSyncSequencesOperator). The target then
    stands alone and is writable.

    One task, not two: each boundary between two tasks costs 0.3 to 0.6 s of scheduling, inside the freeze. Each
    step is its own change in the ledger, with its own inverse, and a re-run does only what is left. First, the last
    check (:meth:`check_nothing_changed_since_comparison`).

    :param large_objects_task_id: the run's ReplicationCopyLargeObjectsOperator, if any: the last check then also
        verifies that the large objects are still the same on both sides.
    """

    def __init__(self, *, large_objects_task_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.large_objects_task_id = large_objects_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        if not self.is_dry_run(context) and self.target.get_subscription_status(self.plan.subscription) is not None:
            self.check_nothing_changed_since_comparison()
        dropped = ReplicationDropSubscriptionOperator.execute(self, context)
        sequences = ReplicationSyncSequencesOperator.execute(self, context)
        return {**dropped, "sequences": sequences["changed"]}

    def check_nothing_changed_since_comparison(self) -> None:
        """The last check before the subscription goes: no table in scope changed on either side since the
        freeze's comparison drained the change capture (a client sharing Ferry's login writes past the fence; a
        write made directly on the target while the comparison's gate waited). Either would be lost or never
        verified, so the freeze stops here, changing nothing. With ``source.keep_writing``, whose writes pass the
        fence by the plan's choice, changes on the source are named but do not stop it; changes on the target and
        large objects that differ still do."""
        if self.plan.thresholds.compare_in_freeze == "full":
            self.log.info("No change capture (thresholds.compare_in_freeze is 'full'): no last check by the capture")
            return
        # The states the same task's comparison just drained (cutover_at_pooler), else as the drain stored them.
        drained = getattr(self, "drained_states", None)
        store = _Drained(drained) if drained and all(drained.values()) else CaptureStore(self.plan)
        scope = self.scope_tables(self.source)
        hooks = {"source": self.source, "target": self.target}
        found, unreadable = {}, {}
        with ThreadPoolExecutor(max_workers=2) as pool:  # inside the freeze: both sides at once, a hook each
            read = pool.map(
                lambda side: ChangeCapture(self.plan, side, hooks[side], store).changes_since_drain(scope), SIDES
            )
            for side, (counts, problem) in zip(SIDES, read, strict=True):
                found[side], unreadable[side] = counts, problem
        changed = [
            f"{side}: {table} ({n} change{'s' if n > 1 else ''})"
            for side in SIDES
            for table, n in sorted(found[side].items())
        ]
        kept = []
        if self.plan.source.keep_writing:
            # The plan lets those roles write to the old side past the fence, and what they write stays there: the
            # source's changes are named, not refused. Nothing excuses a change on the target.
            kept = [c for c in changed if c.startswith("source: ")]
            changed = [c for c in changed if c not in kept]
        if self.large_objects_task_id and self.plan.replication.large_objects != "out_of_scope":
            # The fence holds tables, not large objects: those the copy verified must still be the source's.
            with ThreadPoolExecutor(max_workers=2) as pool:  # both sides at once
                listed = list(
                    pool.map(lambda h: {lo["oid"]: lo["owner"] for lo in h.get_large_objects()}, hooks.values())
                )
                differ = sorted(set(listed[0]).symmetric_difference(listed[1]))  # made or removed since the copy
                try:
                    if not differ:
                        differ = large_object_differences(*pool.map(lambda h: h.large_object_digests(), hooks.values()))
                except psycopg.errors.InsufficientPrivilege as err:
                    changed.append(f"large objects: {err.diag.message_primary} (Ferry's login cannot read it)")
            if differ:
                changed.append(
                    f"large objects {', '.join(map(str, differ[:20]))}{' ...' if len(differ) > 20 else ''} differ "
                    "between source and target (written after copy_large_objects; clear it too)"
                )
        if kept:
            self.log.warning(
                "Changed on the source since the freeze's comparison (source.keep_writing: %s writes past the fence, "
                "and what it writes stays on the old side): %s",
                ", ".join(self.plan.source.keep_writing),
                "; ".join(kept),
            )
        if not changed:
            broken = {side: why for side, why in unreadable.items() if why}
            if broken:
                self.log.warning("Last check not possible by the capture (%s); the comparison stood as it was", broken)
            else:
                self.log.info(
                    "Last check: no table in scope changed on either side since the freeze's comparison, and the "
                    "large objects are the same on both"
                )
            return
        raise AirflowFailException(
            "changed since the freeze's comparison, so never verified: "
            + "; ".join(changed)
            + ". Something writes past the fence: a client sharing Ferry's login (pg_stat_activity on the source, "
            "application_name not 'ferry...'), or a write made directly on the target. Stop it, then clear "
            "compare_changes (it verifies again) and this task. Nothing changed: the subscription is still there"
        )


class ReplicationDropOrphanSlotOperator(FerryOperator):
    """Drop a slot left on the source by a subscription dropped while the source was unreachable."""

    def execute(self, context: Any) -> bool:
        target = Target.source(self.plan.subscription)
        orphan = self.ledger.last(Action.ORPHAN_SLOT, target)
        dropped = self.ledger.last(Action.DROP_ORPHAN_SLOT, target)
        if orphan is None or (dropped is not None and dropped.done and dropped.at > orphan.at):
            self.log.info("No slot awaits a drop")
            return False
        slot = orphan.after["slot"]
        if self.would(context, Action.DROP_ORPHAN_SLOT, target, {"slot": slot}):
            return False
        with self.changing(context, Action.DROP_ORPHAN_SLOT, target, {"slot": slot}, None):
            if self.source.drop_slot(slot):
                self.log.info("Dropped slot %s on the source", slot)
        return True
