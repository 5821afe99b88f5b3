"""What a stage checks before it changes anything, below the operators (they, the sensors and the checks use it).

- :class:`Link`: one direction of replication (forward or reverse), and what both directions share: their health
  (:func:`replication_health`, :func:`reverse_health`) and the in-place catch-up wait (:func:`wait_confirmed`).
- :func:`refuse_losing_new_side_writes`: ``ferry_rollback``'s guard. Once D-day has let the application reach the
  promoted target (its deployments restored, or DNS switched to the new side), the target may hold writes the old
  side lacks; only the reverse replication carries them back, so without it (a plan without
  ``replication.reverse``, or one a person dropped) and always after ``ferry_decommission`` the rollback refuses,
  naming what the new side holds, and changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from airflow.sdk.exceptions import AirflowFailException

from ferry.ledger import Action, Ledger, LedgerRecord, Target, switched_to_new_side
from ferry.plan import Plan, in_scope


class Sides(Protocol):
    """What the guards read: the plan, the ledger and both databases (a FerryContext)."""

    plan: Plan
    ledger: Ledger
    source: Any
    target: Any


@dataclass(frozen=True)
class Link:
    """One direction of Ferry's logical replication: forward (the source publishes, the target subscribes; from
    week prior to D-day's cutover) or reverse (the target publishes, the old source subscribes; from the cutover to
    decommission). The catch-up waits and the health rules take one, so both directions share them."""

    direction: str
    subscription: str  # its slot on the publisher has the same name
    publisher: Any
    subscriber: Any
    publisher_side: str  # the plan's section of each: ``source`` or ``target``
    subscriber_side: str
    publisher_label: str  # what messages call each side
    subscriber_label: str
    fence_action: str  # the ledger action fencing the publisher
    drop_action: str  # the ledger action ending this replication
    drop_target: Target
    max_lag_bytes: int
    wal_retained_warn_ratio: float

    def fence_target(self, plan: Plan) -> Target:
        side = getattr(plan, self.publisher_side)
        return Target.source(side.database) if self.publisher_side == "source" else Target.target(side.database)


def forward_link(plan: Plan, source: Any, target: Any) -> Link:
    """The forward replication: the source publishes, the target's subscription applies."""
    return Link(
        "forward",
        plan.subscription,
        source,
        target,
        "source",
        "target",
        "source",
        "target",
        Action.FENCE_SOURCE,
        Action.DROP_SUBSCRIPTION,
        Target.target(plan.subscription),
        plan.thresholds.max_lag_bytes,
        plan.thresholds.wal_retained_warn_ratio,
    )


def reverse_link(plan: Plan, source: Any, target: Any) -> Link:
    """The reverse replication: the promoted target publishes, the old source's subscription applies."""
    return Link(
        "reverse",
        plan.reverse_subscription,
        target,
        source,
        "target",
        "source",
        "target",
        "old source",
        Action.FENCE_TARGET,
        Action.DROP_REVERSE_REPLICATION,
        Target.source(plan.reverse_subscription),
        plan.replication.reverse.max_lag_bytes if plan.replication.reverse else 0,
        plan.thresholds.wal_retained_warn_ratio,
    )


def replication_health(link: Link) -> dict[str, Any] | None:
    """One direction of replication as both sides see it, or None when neither its subscription nor its slot
    exists. The same rules for both directions:

    - ``problems`` (it does not carry every write now): the subscription missing while its slot stays, disabled,
      or without an apply worker; the slot missing, its WAL lost, or near ``max_slot_wal_keep_size`` (the
      publisher will invalidate it);
    - ``warnings``: apply errors counted since the statistics were reset while the worker streams again (a
      failed transaction is retried, not skipped);
    - ``behind``: the subscriber more than ``max_lag_bytes`` behind, or None. Callers decide whether that
      refuses (decommission) or warns (the pre-flight).
    """
    name = link.subscription
    sub = link.subscriber.get_subscription_status(name)
    slot = link.publisher.get_slot_status(name)
    if sub is None and slot is None:
        return None
    on_sub, on_pub = f"on the {link.subscriber_label}", f"on the {link.publisher_label}"
    problems, warnings = [], []
    errors = 0 if sub is None else sub["apply_error_count"]
    if sub is None:
        problems.append(f"subscription {name} is missing {on_sub} while its slot stays {on_pub}")
    elif not sub["enabled"]:
        problems.append(
            f"subscription {name} is disabled {on_sub}"
            + (f" after {errors} apply error(s)" if errors else "")
            + f" (read the {link.subscriber_label}'s server log)"
        )
    elif sub["worker_pid"] is None:
        problems.append(
            f"subscription {name} has no apply worker {on_sub}"
            + (
                f" ({errors} apply error(s): it exits on each)"
                if errors
                else f" (it cannot reach the {link.publisher_label}?)"
            )
        )
    elif errors:
        warnings.append(
            f"subscription {name} counted {errors} apply error(s) {on_sub} since its statistics were reset; its worker "
            "streams again (a failed transaction is retried, not skipped)"
        )
    behind = None
    if slot is None:
        problems.append(f"slot {name} is missing {on_pub}: the {link.subscriber_label} no longer gets its writes")
    else:
        if slot["wal_status"] == "lost":
            problems.append(
                f"slot {name} {on_pub} lost WAL it needed: the {link.subscriber_label} no longer gets every write; "
                "the replication must be rebuilt"
            )
        limit = slot.get("max_slot_wal_keep_bytes")
        if limit and (slot["retained_bytes"] or 0) > limit * link.wal_retained_warn_ratio:
            problems.append(
                f"slot {name} retains {slot['retained_bytes']} bytes of WAL {on_pub}, near max_slot_wal_keep_size "
                f"({limit}): the {link.publisher_label} will invalidate it"
            )
        if slot["lag_bytes"] is not None and slot["lag_bytes"] > link.max_lag_bytes:
            behind = (
                f"the {link.subscriber_label} is {slot['lag_bytes']} bytes behind the {link.publisher_label} "
                f"({'replication.reverse.max_lag_bytes' if link.direction == 'reverse' else 'thresholds.max_lag_bytes'}"
                f" {link.max_lag_bytes})"
            )
    return {
        "subscription": name,
        "enabled": None if sub is None else sub["enabled"],
        "worker_running": None if sub is None else sub["worker_pid"] is not None,
        "apply_errors": None if sub is None else errors,
        "slot_active": None if slot is None else slot["active"],
        "wal_status": None if slot is None else slot["wal_status"],
        "lag_bytes": None if slot is None else slot["lag_bytes"],
        "retained_bytes": None if slot is None else slot["retained_bytes"],
        "max_slot_wal_keep_bytes": None if slot is None else slot.get("max_slot_wal_keep_bytes"),
        "problems": problems,
        "warnings": warnings,
        "behind": behind,
    }


def reverse_health(ctx: Sides) -> dict[str, Any] | None:
    """The reverse replication's health (:func:`replication_health`), or None when there is none."""
    return replication_health(reverse_link(ctx.plan, ctx.source, ctx.target))


def confirmed(link: Link, lsn: str) -> dict[str, Any] | None:
    """The publisher's slot against ``lsn``: ``caught_up`` once the subscriber confirmed it, ``behind_bytes``,
    ``confirmed_flush_lsn``; None when the slot is gone."""
    return link.publisher.fetch_one("slot_caught_up", fence_lsn=lsn, slot_name=link.subscription)


def wait_confirmed(link: Link, lsn: str, timeout_s: float, poll_s: float = 0.25) -> tuple[dict[str, Any] | None, float]:
    """Poll until the subscriber confirmed ``lsn``, the slot is gone, or ``timeout_s`` passed. Returns the slot's
    last state (see :func:`confirmed`) and the seconds waited: 0 when the first look found it confirmed. The one
    in-place catch-up wait of both directions (the deferred one is ReplicationCaughtUpTrigger, with the same
    query)."""
    started = time.monotonic()
    slot = confirmed(link, lsn)
    if slot is None or slot["caught_up"]:
        return slot, 0.0
    while slot is not None and not slot["caught_up"] and time.monotonic() - started < timeout_s:
        time.sleep(poll_s)
        slot = confirmed(link, lsn)
    return slot, time.monotonic() - started


def new_side_exposure(plan: Plan, history: list[LedgerRecord]) -> LedgerRecord | None:
    """The first change by which D-day let the application reach the target after promoting it (the old side's
    pooler pointed at it, the new deployments scaled up again, or a DNS record switched to the new side), unless a completed
    ``ferry_rollback_after_cutover`` brought the new side's writes back since; None when there is none."""
    promoted = [
        r
        for r in history
        if r.action == Action.DROP_SUBSCRIPTION
        and r.stage == "ferry_d_day"
        and r.target == Target.target(plan.subscription)
        and r.done
    ]
    if not promoted:
        return None
    since = promoted[-1].at
    scaled = [
        r
        for r in history
        if r.at > since and r.stage == "ferry_d_day" and r.action == Action.RESTORE_REPLICAS and (r.after or 0) > 0
    ]
    pooled = [
        r
        for r in history
        if r.at > since
        and r.action == Action.REPOINT_POOLER
        and r.done
        and (r.after or {}).get("side") == "target"
        and r.stage == "ferry_d_day"
    ]
    switched = switched_to_new_side(plan, history, since)
    exposures = sorted([*scaled, *pooled, *([switched] if switched else [])], key=lambda r: r.at)
    if not exposures:
        return None
    back = [
        r
        for r in history
        if r.action == Action.STAGE_COMPLETE
        and r.target == Target.stage("ferry_rollback_after_cutover")
        and r.at > exposures[0].at
    ]
    return None if back else exposures[0]


def what_the_new_side_holds(ctx: Sides) -> list[str]:
    """Per table in scope on the target: where its row count differs from the old source's, or the old source
    lacks the table. Row counts show inserted and deleted rows, not updated ones."""
    differences = []
    source_tables = {t["qualified"] for t in ctx.source.get_tables(ctx.plan.replication.schemas)}
    for table in in_scope(ctx.plan, ctx.target.get_tables(ctx.plan.replication.schemas)):
        name = table["qualified"]
        new = ctx.target.count_rows(name)
        if name not in source_tables:
            differences.append(f"{name}: {new:,} rows on the new side, no such table on the old")
            continue
        old = ctx.source.count_rows(name)
        if new != old:
            differences.append(f"{name}: {new:,} rows on the new side, {old:,} on the old")
    return differences


def refuse_losing_new_side_writes(ctx: Sides) -> None:
    """Fail, changing nothing, when giving the service back to the old side would lose writes the new side took:
    while reverse replication runs (only ferry_rollback_after_cutover keeps them), after ferry_decommission
    (always), and once D-day let the application reach the promoted target with no reverse replication."""
    plan = ctx.plan
    name = plan.reverse_subscription
    if ctx.source.get_subscription_status(name) is not None:
        raise AirflowFailException(
            f"reverse replication {name} runs (D-day got past its cutover): the new side may have taken writes "
            "that only it brings back. This rollback would lose them, so it changes nothing. Trigger "
            "ferry_rollback_after_cutover: it fences the target, waits until the old side has every write, "
            "compares, then gives the service back"
        )
    history = ctx.ledger.records()
    retired = [r for r in history if r.action == Action.RETIRE_SOURCE and r.done]
    if retired:
        raise AirflowFailException(
            f"ferry_decommission retired the old side at {retired[-1].at}: the new side is the application's only "
            "database, and the old one stopped receiving its writes then. There is no way back to it; fix forward "
            "on the new side. This rollback changes nothing"
        )
    exposure = new_side_exposure(plan, history)
    if exposure is None:
        return
    try:
        holds = what_the_new_side_holds(ctx)
    except psycopg.Error as err:  # the refusal stands; only its detail is missing
        holds = [f"(could not count the rows on both sides: {type(err).__name__})"]
    raise AirflowFailException(
        f"D-day let the application reach the new side ({exposure.task}: {exposure.action} {exposure.target} at "
        f"{exposure.at}) and no reverse replication ({name}) carries its writes back: "
        + ("; ".join(holds) if holds else "the row counts agree, but updates and deletes do not show in them")
        + ". This rollback would give the service back to a database without them, so it changes nothing. Ways "
        "forward: fix forward on the new side (it holds every write); or stop the application on the new side, "
        "copy what it wrote to the old side yourself (e.g. pg_dump --data-only of those tables, merged), and "
        "only then give the service back by hand. A plan with replication.reverse carries them back by itself "
        "(ferry_rollback_after_cutover)"
    )
