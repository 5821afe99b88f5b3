"""What a stage checks before it changes anything, below the operators (they, the sensors and the checks use it).

- :func:`reverse_health`: the reverse replication as both sides see it.
- :func:`refuse_losing_new_side_writes`: ``ferry_rollback``'s guard. Once D-day has let the application reach the
  promoted target (its deployments restored, or DNS switched to the new side), the target may hold writes the old
  side lacks; only the reverse replication carries them back, so without it (a plan without
  ``replication.reverse``, or one a person dropped) and always after ``ferry_decommission`` the rollback refuses,
  naming what the new side holds, and changes nothing.
"""

from __future__ import annotations

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


def reverse_health(ctx: Sides) -> dict[str, Any] | None:
    """The reverse replication as both sides see it, or None when there is none: the subscription on the old
    source (enabled, apply worker, errors) and its slot on the target (active, lag, retained WAL)."""
    plan = ctx.plan
    name = plan.reverse_subscription
    subscription = ctx.source.get_subscription_status(name)
    slot = ctx.target.get_slot_status(name)
    if subscription is None and slot is None:
        return None
    problems = []
    if subscription is None:
        problems.append(f"subscription {name} is missing on the old source while its slot stays on the target")
    elif not subscription["enabled"]:
        problems.append(f"subscription {name} is disabled on the old source (an apply error? read its server log)")
    elif subscription["worker_pid"] is None:
        problems.append(f"subscription {name} has no apply worker on the old source (it cannot reach the target?)")
    if subscription is not None and subscription["apply_error_count"]:
        problems.append(f"subscription {name} hit {subscription['apply_error_count']} apply error(s) on the old source")
    if slot is None:
        problems.append(f"slot {name} is missing on the target: the old side no longer receives the new side's writes")
    max_lag = plan.replication.reverse.max_lag_bytes if plan.replication.reverse else 0
    if slot is not None and slot["lag_bytes"] is not None and slot["lag_bytes"] > max_lag:
        problems.append(
            f"the old source is {slot['lag_bytes']} bytes behind the target (replication.reverse.max_lag_bytes "
            f"{max_lag})"
        )
    return {
        "subscription": name,
        "enabled": None if subscription is None else subscription["enabled"],
        "worker_running": None if subscription is None else subscription["worker_pid"] is not None,
        "apply_errors": None if subscription is None else subscription["apply_error_count"],
        "slot_active": None if slot is None else slot["active"],
        "lag_bytes": None if slot is None else slot["lag_bytes"],
        "retained_bytes": None if slot is None else slot["retained_bytes"],
        "problems": problems,
    }


def new_side_exposure(plan: Plan, history: list[LedgerRecord]) -> LedgerRecord | None:
    """The first change by which D-day let the application reach the target after promoting it (the new
    deployments scaled up again, or a DNS record switched to the new side), unless a completed
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
    switched = switched_to_new_side(plan, history, since)
    exposures = sorted([*scaled, *([switched] if switched else [])], key=lambda r: r.at)
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
