"""Reverse replication: from the cutover until ``ferry_decommission``, every write the new side (the target)
accepts streams back to the old source, so that a rollback after the cutover loses none.

D-day sets it up in the freeze, after its own subscription is dropped and before the target takes its first
application write (ReplicationStartReverseOperator: a publication and a slot on the target, a subscription
on the old source that copies nothing and streams from that slot). The old source stays fenced against the
application roles; the subscription's apply worker fires no ordinary trigger, so its writes pass.
``ferry_rollback_after_cutover`` fences the target (ReplicationFenceTargetOperator), waits until the old
source confirmed the fence (ReverseCaughtUpSensor), compares, and ends it (ReplicationStopReverseOperator);
``ferry_decommission`` ends it after the soak period. Every object is written to the ledger before it exists.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from ferry import report
from ferry.checks.schema import outside_reverse_publication
from ferry.guards import confirmed, reverse_health, reverse_link, wait_confirmed
from ferry.hooks.postgres import subscription_conninfo
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator, pull_all
from ferry.sensors.replication import ReplicationCaughtUpSensor


class ReplicationStartReverseOperator(FerryOperator):
    """Set up the reverse replication (``replication.reverse`` in the plan): a publication of the tables in scope
    and a pgoutput slot on the target, then on the old source a subscription to them that copies nothing.

    Runs after D-day dropped its own subscription (else each side would send the other's changes back) and
    before the target takes its first application write (the slot keeps every write from its creation on).
    Waits until the subscription's apply worker streams. Without ``replication.reverse`` it does nothing.
    Inverse: ReplicationStopReverseOperator.

    :param stream_timeout_s: how long the new subscription may take to start streaming.
    """

    def __init__(self, *, stream_timeout_s: float = 60, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream_timeout_s = stream_timeout_s

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        reverse = plan.replication.reverse
        if reverse is None:
            self.log.info(
                "No replication.reverse in the plan: no reverse replication; the DNS switch stays the point of no return"
            )
            return {"reverse": False}
        if self.target.get_subscription_status(plan.subscription) is not None and not self.is_dry_run(context):
            raise AirflowFailException(
                f"subscription {plan.subscription} still exists on the target: with the reverse replication too, each "
                "side would apply the other's changes back. drop_subscription runs first; nothing changed"
            )
        done = self.create_reverse_capture(context)
        done += self.subscribe_reverse(context)
        if self.is_dry_run(context):
            return {"reverse": True, "dry_run": True}
        deadline = time.monotonic() + self.stream_timeout_s
        while True:
            health = reverse_health(self) or {"problems": ["no reverse replication"]}
            if health.get("worker_running") and health.get("slot_active"):
                break
            if time.monotonic() > deadline:
                raise AirflowFailException(
                    f"the reverse replication does not stream after {self.stream_timeout_s:.0f} s: "
                    + "; ".join(health["problems"] or ["the slot on the target is not active"])
                    + ". Check that the old source reaches replication.reverse.publisher_conn_id; re-run this task"
                )
            time.sleep(0.5)
        self.log.info(
            "Reverse replication streams (%s): every write the target accepts from now on reaches the old source",
            "; ".join(done) or "already set up",
        )
        return {"reverse": True, "tables": len(self.scope_tables(self.target)), "done": done}

    def create_reverse_capture(self, context: Any) -> list[str]:
        """The target's side of the reverse replication: its publication and its slot. From the slot's creation on,
        every write the target takes is kept for the old source; what must exist before the first one."""
        plan = self.plan
        pub, name = plan.reverse_publication, plan.reverse_subscription
        tables = self.scope_tables(self.target)
        done = []
        before = self.target.get_publication_tables(pub)
        if before != sorted(tables) and not self.would(
            context, Action.CREATE_REVERSE_PUBLICATION, Target.target(pub), before, tables
        ):
            with self.changing(context, Action.CREATE_REVERSE_PUBLICATION, Target.target(pub), before, tables):
                done.append(f"publication {pub}: {self.target.create_publication(pub, tables)}")
        slot_target = Target.target(f"slot/{name}")
        if self.target.get_slot_status(name) is None and not self.would(
            context, Action.CREATE_REVERSE_SLOT, slot_target, None, {"slot": name}
        ):
            with self.changing(context, Action.CREATE_REVERSE_SLOT, slot_target, None, {"slot": name}) as change:
                lsn = self.target.create_slot(name)
                change.after = {"slot": name, "lsn": lsn}
            done.append(f"slot {name} on the target at {lsn}")
        return done

    def subscribe_reverse(self, context: Any) -> list[str]:
        """The old source's side: its subscription to the target's publication, on the slot (copying nothing)."""
        plan = self.plan
        reverse = plan.replication.reverse
        assert reverse is not None
        pub, name = plan.reverse_publication, plan.reverse_subscription
        if self.source.get_subscription_status(name) is not None:
            return []
        publisher = BaseHook.get_connection(reverse.publisher_conn_id or plan.target.conn_id)
        after = {"publication": pub, "slot": name, "publisher": publisher.host}
        if self.would(context, Action.CREATE_REVERSE_SUBSCRIPTION, Target.source(name), None, after):
            return []
        conninfo = subscription_conninfo(publisher, plan.target.database, name)
        with self.changing(context, Action.CREATE_REVERSE_SUBSCRIPTION, Target.source(name), None, after):
            self.source.create_subscription(name, pub, conninfo, existing_slot=True)
        return [f"subscription {name} on the old source, from {publisher.host}"]


class ReplicationStopReverseOperator(FerryOperator):
    """End the reverse replication: the subscription on the old source (and its slot on the target with it), a
    slot left on the target, the publication on the target. Inverse of ReplicationStartReverseOperator.

    :param require: ``caught_up`` (ferry_rollback_after_cutover): refuse unless the target is fenced and the old
        source confirmed the fence; ``healthy`` (ferry_decommission): refuse while the reverse replication is
        broken or behind (``replication.reverse.max_lag_bytes``), then end it only once the old source confirmed
        every write the target had taken when the step began; ``nothing``: end it as it is.
    :param caught_up_timeout_s: with ``healthy``, the longest wait for that confirmation (then it fails, changing
        nothing).
    """

    def __init__(self, *, require: str = "nothing", caught_up_timeout_s: float = 300, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if require not in ("caught_up", "healthy", "nothing"):
            raise ValueError(f"require must be caught_up, healthy or nothing, not {require!r}")
        self.require = require
        self.caught_up_timeout_s = caught_up_timeout_s

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        pub, name = plan.reverse_publication, plan.reverse_subscription
        health = reverse_health(self)
        publication = self.target.get_publication_tables(pub)
        if health is None and publication is None:
            self.log.info("No reverse replication (%s); nothing to do", name)
            return {"dropped": []}
        dry = self.is_dry_run(context)
        if dry and health is not None and self.require != "nothing":
            self.log.info(
                "DRY RUN: a real run first requires the reverse replication %s", self.require.replace("_", " ")
            )
        refusals = [] if health is None else health["problems"] + ([health["behind"]] if health["behind"] else [])
        if not dry and self.require == "healthy" and refusals:
            raise AirflowFailException(
                "the reverse replication is not healthy, so ending it now could lose the new side's last writes on "
                "the old side: " + "; ".join(refusals) + ". Fix it and wait until it catches up; nothing changed"
            )
        if not dry and health is not None and self.require == "caught_up":
            self._check_caught_up()
        if not dry and health is not None and self.require == "healthy":
            self._wait_caught_up_now()
        before = {"publication": pub if publication is not None else None} | (health or {})
        if self.would(context, Action.DROP_REVERSE_REPLICATION, Target.source(name), before, None):
            return {"dropped": [], "dry_run": True}
        dropped = []
        with self.changing(context, Action.DROP_REVERSE_REPLICATION, Target.source(name), before, None):
            if self.source.get_subscription_status(name) is not None:
                self.source.drop_subscription(name, publisher_reachable=True)
                dropped.append(f"subscription {name} (old source)")
            if self.target.get_slot_status(name) is not None and self.target.drop_slot(name):
                dropped.append(f"slot {name} (target)")
            if publication is not None and self.target.drop_publication(pub):
                dropped.append(f"publication {pub} (target)")
        self.log.info("Reverse replication ended: dropped %s", ", ".join(dropped) or "nothing left")
        return {"dropped": dropped}

    def _wait_caught_up_now(self) -> None:
        """Wait until the old source has confirmed everything the target had written when this step began (the
        new side keeps serving, so what it writes later is its alone), within ``caught_up_timeout_s``."""
        link = reverse_link(self.plan, self.source, self.target)
        now = self.target.get_current_lsn()
        self.log.info("Ending the reverse replication caught up: waiting for the old source to confirm %s", now)
        slot, waited = wait_confirmed(link, now, self.caught_up_timeout_s)
        if slot is None or not slot["caught_up"]:
            raise AirflowFailException(
                f"the old source has not confirmed the target's WAL position {now} in {waited:.0f} s "
                f"({'no slot' if slot is None else str(slot['behind_bytes'])} bytes behind): ending the reverse "
                "replication now would leave the new side's last writes off the old side. Look at the subscription "
                "on the old source, then re-run; nothing changed"
            )
        self.log.info(
            "The old source confirmed %s (its slot at %s) %s",
            now,
            slot["confirmed_flush_lsn"],
            f"after {waited:.1f} s of waiting" if waited else "at the first look",
        )

    def _check_caught_up(self) -> None:
        fenced = self.ledger.last(Action.FENCE_TARGET, Target.target(self.plan.target.database))
        if fenced is None or not fenced.done or not self.target.get_fenced_tables():
            raise AirflowFailException(
                "the target is not fenced: it may still take writes the old side would never get. fence_target "
                "runs first; nothing changed"
            )
        slot = confirmed(reverse_link(self.plan, self.source, self.target), fenced.after["fence_lsn"])
        if slot is None or not slot["caught_up"]:
            raise AirflowFailException(
                f"the old source has not confirmed the target's fence at {fenced.after['fence_lsn']} "
                f"({'no slot' if slot is None else str(slot['behind_bytes']) + ' bytes behind'}); "
                "wait_reverse_caught_up runs first; nothing changed"
            )


class ReplicationUnfenceTargetOperator(FerryOperator):
    """Lift the fence on the target (inverse of ReplicationFenceTargetOperator)."""

    def execute(self, context: Any) -> list[str]:
        target = Target.target(self.plan.target.database)
        fenced = self.target.get_fenced_tables()
        if not fenced:
            self.log.info("The target is not fenced; nothing to do")
            return []
        if self.would(context, Action.UNFENCE_TARGET, target, fenced, []):
            return []
        with self.changing(context, Action.UNFENCE_TARGET, target, fenced, []):
            tables = self.target.remove_fence()
        self.log.info("Fence lifted from %d tables of the target", len(tables))
        return tables


class ReverseCaughtUpSensor(ReplicationCaughtUpSensor):
    """Wait (deferred) until the old source has confirmed everything the target wrote before its fence: the
    catch-up wait of ReplicationCaughtUpSensor in the reverse direction (the target's slot against the target's
    fence LSN, the old source's subscription checked for errors).

    :param fence_lsn: the target's fence position (templated); empty: the last one the ledger recorded.
    :param timeout_s: the longest wait (the run's ``catch_up_timeout_s`` param overrides it).
    """

    link_direction = "reverse"


class ReverseCheckOperator(FerryOperator):
    """Refuse to start unless the reverse replication exists and streams; log its health (lag, retained WAL).

    :param allow_lag: pass with lag above ``replication.reverse.max_lag_bytes`` (the rollback waits for it).
    :param refuse_rows_left_behind: refuse too while a table created on the new side since the cutover holds rows
        outside the reverse publication (the way back would leave them there, and no comparison would see them).
    """

    def __init__(self, *, allow_lag: bool = False, refuse_rows_left_behind: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allow_lag = allow_lag
        self.refuse_rows_left_behind = refuse_rows_left_behind

    def execute(self, context: Any) -> dict[str, Any]:
        health = reverse_health(self)
        if health is None:
            raise AirflowFailException(
                f"no reverse replication ({self.plan.reverse_subscription}) between the target and the old source: "
                "D-day sets it up when the plan has replication.reverse. Before D-day's cutover, use ferry_rollback"
            )
        problems = health["problems"] + ([health["behind"]] if health["behind"] and not self.allow_lag else [])
        for warning in health["warnings"] + ([health["behind"]] if health["behind"] and self.allow_lag else []):
            self.log.warning("%s", warning)
        self.log.info(
            "Reverse replication %s: apply worker %s, %s bytes behind, %s bytes of WAL kept on the target",
            health["subscription"],
            "running" if health["worker_running"] else "NOT running",
            health["lag_bytes"],
            health["retained_bytes"],
        )
        if problems:
            raise AirflowFailException("; ".join(problems) + "; fix the reverse replication, then re-run")
        if self.refuse_rows_left_behind:
            pub, sub = self.plan.reverse_publication, self.plan.reverse_subscription
            left = [t for t in outside_reverse_publication(self.plan, self.target) if self.target.has_rows(t)]
            if left:
                raise AirflowFailException(
                    f"{', '.join(left)}: created on the new side since the cutover, holding rows, and not in the "
                    f"reverse publication {pub}: the way back would leave those rows on the new side. Create each "
                    f"on the old source (same columns), then ALTER PUBLICATION {pub} ADD TABLE <table> on the target "
                    f"and ALTER SUBSCRIPTION {sub} REFRESH PUBLICATION on the old source (it copies their rows), "
                    "then re-run. Nothing changed"
                )
            copying = [t["qualified"] for t in self.source.get_subscription_tables(sub) if t["state"] != "r"]
            if copying:
                raise AirflowFailException(
                    f"{', '.join(copying)}: the reverse subscription {sub} is still copying their rows to the old "
                    "source (pg_subscription_rel not ready); a comparison now would find rows missing. Re-run once "
                    "it is done. Nothing changed"
                )
        return health


class FerryRetireSourceOperator(FerryOperator):
    """Record in the ledger that the old source is retired: Ferry no longer replicates to it nor rolls back to it."""

    def execute(self, context: Any) -> dict[str, Any]:
        target = Target.source(self.plan.source.database)
        earlier = self.ledger.last(Action.RETIRE_SOURCE, target)
        if earlier is not None and earlier.done:
            self.log.info("The old source was retired at %s", earlier.at)
            return earlier.after
        after = {"retired_at": datetime.now(UTC).isoformat(), "lsn": self.source.get_current_lsn()}
        if not self.would(context, Action.RETIRE_SOURCE, target, None, after):
            self.record(context, Action.RETIRE_SOURCE, target, None, after)
            self.log.info(
                "Old source %s retired at %s; it stays fenced (%d tables refuse the application's writes), and "
                "ferry_rollback refuses from now on",
                self.plan.source.database,
                after["retired_at"],
                len(self.source.get_fenced_tables()),
            )
        return after


class FerryStageReportOperator(FerryOperator):
    """Write a stage's report (Markdown and JSON, locally and in S3): this run's changes from the ledger, the
    comparison per table, each task's time, and the window the application could not write (``freeze``)
    between two ledger actions (the opening one maybe made by an earlier run of the stage, stopped half-way).

    :param kind: the report's name (``rollback_after_cutover``, ``decommission``).
    :param compare_task_id: the mapped comparison task, if any.
    :param freeze: the actions opening and closing the write freeze, if any.
    """

    def __init__(
        self,
        *,
        kind: str,
        compare_task_id: str | None = None,
        freeze: tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kind, self.compare_task_id, self.freeze = kind, compare_task_id, freeze

    def execute(self, context: Any) -> dict[str, Any]:
        run_id = context["run_id"]
        every = self.ledger.records()
        records = [r for r in every if r.run_id == run_id]
        rows = report.timeline([t for task in context["dag"].task_ids for t in pull_all(context, task, "timing")])
        freeze_s = None
        if self.freeze:
            closed = next((r for r in records if r.action == self.freeze[1] and r.done), None)
            # Opened by this run, or by an earlier one stopped half-way (this one found it in place).
            opened = (
                None
                if closed is None
                else next(
                    (r for r in reversed(every) if r.action == self.freeze[0] and r.done and r.at <= closed.at), None
                )
            )
            if opened and closed:
                freeze_s = round(
                    (datetime.fromisoformat(closed.finished_at) - datetime.fromisoformat(opened.at)).total_seconds(), 3
                )
        comparisons = pull_all(context, self.compare_task_id, "comparison") if self.compare_task_id else []
        data = {
            "plan": self.plan.name,
            "run_id": run_id,
            "dry_run": self.is_dry_run(context),
            "freeze_s": freeze_s,
            "comparison": [
                {k: c.get(k) for k in ("table", "equal", "rows_source", "rows_target")} for c in comparisons
            ],
            "webhooks": next((r.after for r in records if r.action == Action.REPLAY_WEBHOOKS), None),
            "timeline": rows,
            "ledger": [{"at": r.at, "task": r.task, "action": r.action, "target": r.target} for r in records],
        }
        lines = [
            f"# Ferry {self.kind.replace('_', ' ')}: {self.plan.name}",
            "",
            f"- run: `{run_id}`{' (dry run)' if data['dry_run'] else ''}",
            f"- the application could not write for: {freeze_s if freeze_s is not None else 'n/a'} s",
            f"- webhooks replayed: {data['webhooks'] or 'none'}",
            "",
            "| table | equal | rows on the old source | rows on the target |",
            "|---|---|---|---|",
            *(f"| {c['table']} | {c['equal']} | {c['rows_source']} | {c['rows_target']} |" for c in data["comparison"]),
            "",
            "## Changes (ledger)",
            *(f"- {e['at']} {e['task']}: {e['action']} {e['target']}" for e in data["ledger"]),
        ]
        path = report.write(self.plan, self.kind, context, "\n".join(lines) + "\n", data, name=self.kind, upload=True)
        self.log.info("Report written: %s", path)
        return {"report_path": str(path), "freeze_s": freeze_s}
