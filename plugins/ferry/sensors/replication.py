"""Waits of Postgres logical replication: the initial copy, and catching up to the fence (either direction)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from ferry.guards import Link, forward_link, replication_health, reverse_link, wait_confirmed
from ferry.ledger import Action, Target
from ferry.operators.base import FerryContext, FerryOperator
from ferry.progress import copy_line, due, human_seconds
from ferry.triggers.replication import ReplicationCaughtUpTrigger

STATES = {"i": "initializing", "d": "copying", "f": "copied", "s": "synchronized", "r": "ready"}
#: At most one progress line per table this often (seconds).
PROGRESS_EVERY_S = 30.0


class ReplicationInitialCopySensor(FerryContext, BaseSensorOperator):
    """Wait until every subscribed table's initial copy is done (state ``r``); fail if replication breaks."""

    def poke(self, context: Any) -> bool:
        plan = self.plan
        status = self.target.get_subscription_status(plan.subscription)
        if self.is_dry_run(context):
            self.log.info(
                "DRY RUN, not waiting: would wait for the initial copy of subscription %s (now %s)",
                plan.subscription,
                "absent" if status is None else f"{len(self.target.get_subscription_tables(plan.subscription))} tables",
            )
            return True
        if status is None:
            created = self.ledger.last(Action.CREATE_SUBSCRIPTION, Target.target(plan.subscription))
            dropped = self.ledger.last(Action.DROP_SUBSCRIPTION, Target.target(plan.subscription))
            if created and dropped and dropped.done and dropped.at > created.at:
                self.log.info(
                    "Subscription %s was dropped at the cutover (%s): nothing to wait for",
                    plan.subscription,
                    dropped.at,
                )
                return True
            raise AirflowFailException(f"subscription {plan.subscription} does not exist; create it first")
        if not status["enabled"]:
            raise AirflowFailException(f"subscription {plan.subscription} is disabled; ALTER SUBSCRIPTION ... ENABLE")
        tables = self.target.get_subscription_tables(plan.subscription)
        waiting = [
            f"{t['schema']}.{t['table']} ({STATES.get(t['state'], t['state'])})" for t in tables if t["state"] != "r"
        ]
        self.log_copy_progress(tables)
        summary = (
            len(tables) - len(waiting),
            len(tables),
            status["sync_error_count"],
            f"; waiting for {', '.join(waiting[:10])}" if waiting else "",
        )
        if summary != getattr(self, "_last_summary", None) or not waiting:  # said again only when it changed
            self._last_summary = summary
            self.log.info("Initial copy: %d of %d tables ready; sync errors %d%s", *summary)
        return bool(tables) and not waiting

    def log_copy_progress(self, tables: list[dict[str, Any]]) -> None:
        """Per table being copied: rows and bytes so far (``pg_stat_progress_copy`` on the target) against the
        source's estimate, the rate and an ETA, at most a line every 30 s; once every table is copied, how long it
        took since the subscription was made (the ledger)."""
        copying = self.target.fetch("copy_progress")
        if copying:
            sizes = {r["qualified"]: r for r in self.source.fetch("table_sizes", schemas=self.plan.replication.schemas)}
            for row in copying:
                if not due(row["elapsed_s"], float(self.poke_interval), PROGRESS_EVERY_S):
                    continue
                size = sizes.get(row["qualified"], {})
                line = copy_line(
                    row["qualified"],
                    row["rows_done"] or 0,
                    size.get("rows_estimate") or 0,
                    row["bytes_done"] or 0,
                    size.get("bytes") or 0,
                    row["elapsed_s"],
                )
                self.log.info("Copying %s", line)
        elif tables and all(t["state"] == "r" for t in tables):
            made = self.ledger.last(Action.CREATE_SUBSCRIPTION, Target.target(self.plan.subscription))
            if made is not None and made.done:
                took = (datetime.now(UTC) - datetime.fromisoformat(made.at)).total_seconds()
                self.log.info(
                    "Initial copy of %d table(s) done: %s since the subscription was made (%s)",
                    len(tables),
                    human_seconds(took),
                    made.at,
                )


class ReplicationCaughtUpSensor(FerryOperator):
    """Wait (deferred) until the subscriber has confirmed everything its publisher wrote before the fence. One wait
    for both directions (``link_direction``): forward, the target confirming the source's fence (D-day); reverse, the
    old source confirming the target's (ReverseCaughtUpSensor, the way back).

    Fails at once with the reason when the subscription is gone or disabled, or hits apply errors, instead
    of waiting for the timeout. An enabled subscription whose apply worker is not running (yet) is given
    ``worker_grace_s`` to start again (see ReplicationCaughtUpTrigger).

    :param fence_lsn: the fence's WAL position (templated, e.g. the fence task's ``fence_lsn`` XCom;
        ReplicationFenceAndCatchUpOperator sets it from its own fence); when empty, the last one the ledger
        recorded.
    :param timeout_s: the longest wait (the run's ``catch_up_timeout_s`` param overrides it).
    :param poll_interval: seconds between polls of both servers.
    :param inline_wait_s: how long to poll in the task itself before deferring. The lag at the fence is
        usually under a second; deferring costs a round trip through the triggerer and a second start of the
        task on a worker (seconds, inside the write freeze), so a short wait is done in place.
    """

    template_fields = ("fence_lsn",)
    link_direction = "forward"
    #: what each direction says when its subscription does not exist
    MISSING = {
        "forward": "ferry_week_prior creates it: run that stage first",
        "reverse": "there is no reverse replication to wait for (D-day sets it up when the plan has "
        "replication.reverse)",
    }

    def __init__(
        self,
        *,
        fence_lsn: str | None = None,
        timeout_s: float = 1800,
        poll_interval: float = 0.25,
        inline_wait_s: float = 5.0,
        worker_grace_s: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fence_lsn = fence_lsn
        self.timeout_s = timeout_s
        self.poll_interval = poll_interval
        self.inline_wait_s = inline_wait_s
        self.worker_grace_s = worker_grace_s

    @property
    def link(self) -> Link:
        make = forward_link if self.link_direction == "forward" else reverse_link
        return make(self.plan, self.source, self.target)

    def execute(self, context: Any) -> dict[str, Any] | None:
        plan, link = self.plan, self.link
        name, publisher, subscriber = link.subscription, link.publisher_label, link.subscriber_label
        fence_lsn = self.fence_lsn
        if self.is_dry_run(context):
            self.log.info(
                "DRY RUN, not waiting: would wait until the %s confirms the %s's fence; replication now %s",
                subscriber,
                publisher,
                replication_health(link),
            )
            return None
        status = link.subscriber.get_subscription_status(name)
        # The ledger only when the fence's XCom is missing or the subscription is gone (it is read from S3).
        fenced = (
            self.ledger.last(link.fence_action, link.fence_target(plan)) if status is None or not fence_lsn else None
        )
        if status is None:
            dropped = self.ledger.last(link.drop_action, link.drop_target)
            if dropped and dropped.done and fenced and fenced.done and dropped.at > fenced.at:
                self.log.info("Caught up earlier: the replication was ended after the fence (%s)", dropped.at)
                return {"status": "success", "fence_lsn": fence_lsn or fenced.after["fence_lsn"], "waited_s": None}
            raise AirflowFailException(
                f"subscription {name} does not exist on the {subscriber}; it cannot catch up. {self.MISSING[link.direction]}"
            )
        if not status["enabled"]:
            raise AirflowFailException(
                f"subscription {name} is disabled on the {subscriber}; it cannot catch up. Read the {subscriber}'s "
                "server log (an apply error disables it when disable_on_error is on), fix the cause, then "
                f"ALTER SUBSCRIPTION {name} ENABLE"
            )
        if status["worker_pid"] is None:
            self.log.info(
                "Subscription %s has no apply worker right now; PostgreSQL starts it again (waiting up to %.0f s)",
                name,
                self.worker_grace_s,
            )
        if not fence_lsn:
            if fenced is None or not fenced.done:
                raise AirflowFailException(f"no fence of the {publisher} in the ledger: fence the {publisher} first")
            fence_lsn = fenced.after["fence_lsn"]
        self.log.info("Waiting for the %s to confirm the %s's fence at %s", subscriber, publisher, fence_lsn)
        publisher_at, subscriber_at = getattr(plan, link.publisher_side), getattr(plan, link.subscriber_side)
        return self.wait_for_fence(
            context,
            link,
            ReplicationCaughtUpTrigger(
                source_conn_id=publisher_at.conn_id,
                source_database=publisher_at.database,
                target_conn_id=subscriber_at.conn_id,
                target_database=subscriber_at.database,
                subscription=name,
                fence_lsn=fence_lsn,
                baseline_apply_errors=status["apply_error_count"],
                poll_interval=self.poll_interval,
                worker_grace_s=self.worker_grace_s,
                publisher_label=publisher,
                subscriber_label=subscriber,
            ),
        )

    #: Seconds left of D-day's freeze budget when the fence task waits (ReplicationFenceAndCatchUpOperator), else None.
    freeze_budget_left_s: float | None = None

    def wait_for_fence(self, context: Any, link: Link, trigger: ReplicationCaughtUpTrigger) -> dict[str, Any] | None:
        """Poll the publisher's slot in place for ``inline_wait_s``; then defer to ``trigger``. Within D-day's
        freeze budget, when there is one: past it the task fails (and D-day reverts)."""
        budget = self.freeze_budget_left_s
        inline = self.inline_wait_s if budget is None else max(0.0, min(self.inline_wait_s, budget))
        slot, waited = wait_confirmed(link, trigger.fence_lsn, inline, self.poll_interval)
        if slot is not None and slot["caught_up"]:
            event = {
                "status": "success",
                "fence_lsn": trigger.fence_lsn,
                "confirmed_flush_lsn": slot["confirmed_flush_lsn"],
                "waited_s": round(waited, 3),
                "at": time.time(),
            }
            return self.execute_complete(context, event)
        timeout = float(self.param(context, "catch_up_timeout_s", self.timeout_s))
        if budget is not None:
            if budget - waited <= 0:
                behind = "unknown" if slot is None else slot["behind_bytes"]
                raise AirflowFailException(
                    f"the {link.subscriber_label} has not confirmed the fence within thresholds.max_freeze_s "
                    f"({self.plan.thresholds.freeze_budget_s:g} s of freeze; {behind} bytes still behind): "
                    "revert_freeze gives the service back to the old side. Find out why the apply is slow or held (a "
                    "lock on the target, apply errors, the lag at the fence), then run ferry_rollback and D-day again"
                )
            timeout = min(timeout, budget - waited)
        # The trigger says why (a slot gone) or waits on (deferred: no worker slot held).
        self.log.info(
            "Not caught up within %.1f s: deferring the wait to the triggerer (%.0f s at most)", inline, timeout
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=timeout))
        return None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event["status"] != "success":
            message = event["message"]
            if self.link_direction == "forward" and "apply error" in message:
                from ferry.checks.schema import apply_stoppers, explain_apply_errors

                message += f". {explain_apply_errors(apply_stoppers(self.plan))}"
            raise AirflowFailException(message)
        self.log.info(
            "Caught up: the %s confirmed %s (the fence %s) after %.2f s",
            self.link.subscriber_label,
            event["confirmed_flush_lsn"],
            event["fence_lsn"],
            event["waited_s"] if event["waited_s"] is not None else 0.0,
        )
        return event
