"""Route53 operators: lower TTLs ahead of time, switch records, and restore them exactly."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.hooks.route53 import Route53Hook, record_set, record_value
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator
from ferry.plan import DnsRecord

WEIGHTED_SETS = ("ferry-old", "ferry-new")


class _Route53Operator(FerryOperator):
    """Shared: the zone and the plan's records, each checked before anything changes."""

    def __init__(self, *, records: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records = records

    def zone(self) -> tuple[Route53Hook, str]:
        """The hook and the plan's hosted zone id; fails naming dns.zone when the zone does not exist."""
        if self.plan.dns is None:
            raise AirflowFailException("the plan has no dns section")
        hook = Route53Hook(aws_conn_id=self.plan.aws.conn_id)
        zone_id = hook.get_zone_id(self.plan.dns.zone)
        if zone_id is None:
            raise AirflowFailException(
                f"dns.zone: hosted zone {self.plan.dns.zone} does not exist in this AWS account; fix the zone name"
            )
        return hook, zone_id

    def checked_records(self, allowed: str) -> tuple[Route53Hook, str, list[tuple[int, DnsRecord, dict[str, Any]]]]:
        """The zone id and each chosen record with its live record set, after checking all of them.

        :param allowed: ``old`` (must hold old_value) or ``old_or_new`` (either).
        """
        hook, zone_id = self.zone()
        dns = self.plan.dns
        chosen = [(i, r) for i, r in enumerate(dns.records) if self.records is None or r.name in self.records]
        problems, live = [], []
        for i, rec in chosen:
            current = hook.get_record(zone_id, rec.name, rec.type)
            value = record_value(current)
            wanted = {rec.old_value} if allowed == "old" else {rec.old_value, rec.new_value}
            hooks = self.plan.webhooks
            if hooks and hooks.recorder_address and rec.name == hooks.host and allowed != "old":
                wanted.add(hooks.recorder_address)  # routed to the recorder during the freeze
            if value not in wanted:
                problems.append(
                    f"dns.records[{i}].old_value: {rec.name} {rec.type} holds {value!r}, expected {rec.old_value!r}"
                    + ("" if allowed == "old" else f" or {rec.new_value!r}")
                )
            live.append((i, rec, current))
        if problems:
            raise AirflowFailException("nothing changed; " + "; ".join(problems) + ". Correct the plan or the zone.")
        return hook, zone_id, live

    def change(self, context: Any, hook: Route53Hook, zone_id: str, action: Action, before: dict, after: dict) -> None:
        """UPSERT ``after``, wait for INSYNC and read it back, intent and outcome recorded (on a dry run: report it only)."""
        self.change_all(context, hook, zone_id, action, [(before, after)])

    def change_all(
        self, context: Any, hook: Route53Hook, zone_id: str, action: Action, pairs: list[tuple[dict, dict]]
    ) -> None:
        """:meth:`change` for several records at once: one change batch, one wait for INSYNC (a Route53 change takes
        up to a minute to propagate: waiting once, not once per record). Each record's intent is in the ledger
        before the batch and its outcome after it read back."""
        wanted = [
            (before, after)
            for before, after in pairs
            if not self.would(context, action, Target.dns(after["Name"], after["Type"]), before, after)
        ]
        if not wanted:
            return
        with ExitStack() as stack:
            for before, after in wanted:
                stack.enter_context(
                    self.changing(context, action, Target.dns(after["Name"], after["Type"]), before, after)
                )
            names = ", ".join(after["Name"] for _, after in wanted)
            change_id = hook.upsert_records(zone_id, [after for _, after in wanted], f"ferry {action} {names}"[:256])
            hook.wait_for_change_insync(change_id)
            for _, after in wanted:
                back = hook.get_record(zone_id, after["Name"], after["Type"])
                if back is None or record_value(back) != record_value(after) or back.get("TTL") != after["TTL"]:
                    raise AirflowFailException(f"{after['Name']}: reads back as {back}, not {after}")
        for before, after in wanted:
            self.log.info(
                "%s %s: %s (TTL %s) -> %s (TTL %s), INSYNC",
                action,
                after["Name"],
                record_value(before),
                before.get("TTL"),
                record_value(after),
                after["TTL"],
            )


class Route53LowerTtlOperator(_Route53Operator):
    """Lower each record's TTL to its ``low_ttl`` (value unchanged), so the switch propagates fast.

    Inverse: Route53RestoreRecordsOperator.

    :param records: names of the plan's records to change (default: all).
    """

    def execute(self, context: Any) -> int:
        hook, zone_id, live = self.checked_records("old_or_new")
        pairs = []
        for _, rec, current in live:
            if current["TTL"] <= rec.low_ttl:
                self.log.info("%s: TTL already %s", rec.name, current["TTL"])
                continue
            pairs.append((current, {**current, "TTL": rec.low_ttl}))
        self.change_all(context, hook, zone_id, Action.LOWER_TTL, pairs)
        return len(pairs)


def check_steps(steps: list[int], field: str) -> list[int]:
    """Weighted steps rise from above 0 to 100, else a ValueError naming ``field``."""
    if steps != sorted(steps) or steps[-1] != 100 or steps[0] <= 0:
        raise ValueError(f"{field}: steps must rise from above 0 to 100, like [10, 50, 100]; got {steps}")
    return steps


class Route53SwitchRecordsOperator(_Route53Operator):
    """Point each record at its ``new_value`` (with its low TTL), wait for INSYNC, verify by reading back.

    All at once, or in weighted steps (say 10%, 50%, 100% of answers): the simple record becomes two
    weighted sets (``ferry-old`` and ``ferry-new``) whose weights move step by step, INSYNC at each,
    with a pause between steps to watch the new side; the last step (100) leaves a simple record with
    the new value. A re-run resumes from the live weights. Inverse: Route53RestoreRecordsOperator,
    also from half-way.

    :param records: names of the plan's records to switch (default: all).
    :param weighted_steps: percentages of answers for the new value, rising to 100; empty: all at once.
        The run's ``dns_weighted_steps`` param (D-day's trigger form) overrides it.
    :param step_pause_s: seconds between weighted steps; the run's ``dns_step_pause_s`` param overrides it.
    """

    def __init__(self, *, weighted_steps: list[int] | None = None, step_pause_s: float = 60, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.weighted_steps = check_steps(weighted_steps, "weighted_steps") if weighted_steps else []
        self.step_pause_s = step_pause_s

    def execute(self, context: Any) -> int:
        steps = self.param(context, "dns_weighted_steps", self.weighted_steps)
        if steps:
            try:
                check_steps(steps, "dns_weighted_steps")
            except ValueError as err:
                raise AirflowFailException(f"{err}; nothing changed") from None
            return self.switch_weighted(
                context, steps, float(self.param(context, "dns_step_pause_s", self.step_pause_s))
            )
        hook, zone_id, live = self.checked_records("old_or_new")
        pairs = []
        for _, rec, current in live:
            if record_value(current) == rec.new_value:
                self.log.info("%s: already points at %s", rec.name, rec.new_value)
                continue
            pairs.append((current, record_set(rec.name, rec.type, rec.new_value, min(current["TTL"], rec.low_ttl))))
        self.change_all(context, hook, zone_id, Action.SWITCH_RECORD, pairs)  # together: one wait for INSYNC
        return len(pairs)

    def switch_weighted(self, context: Any, steps: list[int], pause_s: float) -> int:
        """Move each record to its new value in the weighted ``steps``, ``pause_s`` apart."""
        hook, zone_id = self.zone()
        dns, hooks = self.plan.dns, self.plan.webhooks
        plans, problems, direct = [], [], []
        for i, rec in enumerate(dns.records):
            if self.records is not None and rec.name not in self.records:
                continue
            sets = hook.get_record_sets(zone_id, rec.name, rec.type)
            simple = next((r for r in sets if "SetIdentifier" not in r), None)
            weighted = {r["SetIdentifier"]: r for r in sets if r.get("SetIdentifier") in WEIGHTED_SETS}
            if simple and record_value(simple) == rec.new_value:
                self.log.info("%s: already points at %s", rec.name, rec.new_value)
                continue
            if simple and hooks and rec.name == hooks.host and record_value(simple) == hooks.recorder_address:
                direct.append((rec, simple))  # webhooks leave the recorder all at once: no canary for them
                continue
            if simple and record_value(simple) != rec.old_value:
                problems.append(
                    f"dns.records[{i}].old_value: {rec.name} holds {record_value(simple)!r}, expected {rec.old_value!r}"
                )
            elif not simple and len(weighted) != 2:
                problems.append(
                    f"dns.records[{i}].name: {rec.name} {rec.type} has neither a simple record nor Ferry's weighted sets"
                )
            else:
                plans.append((rec, simple, weighted))
        if problems:
            raise AirflowFailException("nothing changed; " + "; ".join(problems) + ". Correct the plan or the zone.")
        for rec, simple in direct:
            new = record_set(rec.name, rec.type, rec.new_value, min(simple["TTL"], rec.low_ttl))
            self.change(context, hook, zone_id, Action.SWITCH_RECORD, simple, new)
        for rec, simple, weighted in plans:
            ttl = rec.low_ttl
            current = weighted["ferry-new"]["Weight"] if weighted else 0
            target = Target.dns(rec.name, rec.type)
            if self.would(context, Action.WEIGHT_STEP, target, current, [s for s in steps if s > current]):
                continue
            if simple:  # the switch as a whole, so that restore finds the record as it was first
                self.record(
                    context, Action.SWITCH_RECORD, target, simple, record_set(rec.name, rec.type, rec.new_value, ttl)
                )
            current = weighted["ferry-new"]["Weight"] if weighted else 0
            for step in (s for s in steps if s > current):
                old_set = record_set(rec.name, rec.type, rec.old_value, ttl, ("ferry-old", 100 - step))
                new_set = record_set(rec.name, rec.type, rec.new_value, ttl, ("ferry-new", step))
                live = list(weighted.values())
                if step == 100:
                    changes = [("DELETE", r) for r in live] + [
                        ("CREATE", record_set(rec.name, rec.type, rec.new_value, ttl))
                    ]
                elif simple:
                    changes = [("DELETE", simple), ("CREATE", old_set), ("CREATE", new_set)]
                else:
                    changes = [("UPSERT", old_set), ("UPSERT", new_set)]
                with self.changing(context, Action.WEIGHT_STEP, target, current, step):
                    hook.wait_for_change_insync(
                        hook.change_records(zone_id, changes, f"ferry weighted switch {rec.name} {step}%")
                    )
                self.log.info("%s: %d%% of answers now %s (INSYNC)", rec.name, step, rec.new_value)
                simple, weighted, current = None, {"ferry-old": old_set, "ferry-new": new_set}, step
                if step < 100:
                    time.sleep(pause_s)
            back = hook.get_record(zone_id, rec.name, rec.type)
            if record_value(back) != rec.new_value:
                raise AirflowFailException(f"{rec.name}: reads back as {back}, not {rec.new_value}")
        return len(plans) + len(direct)


class Route53RestoreRecordsOperator(_Route53Operator):
    """Restore each record exactly as it was before Ferry first changed it (value and TTL), from the ledger.

    :param records: names of the plan's records to restore (default: all).
    """

    def execute(self, context: Any) -> int:
        hook, zone_id = self.zone()
        dns = self.plan.dns
        history = self.ledger.records()
        restored = 0
        for rec in dns.records:
            if self.records is not None and rec.name not in self.records:
                continue
            target = Target.dns(rec.name, rec.type)
            changes = [
                r for r in history if r.target == target and r.action in (Action.LOWER_TTL, Action.SWITCH_RECORD)
            ]
            if not changes:
                self.log.info("%s: Ferry never changed it", rec.name)
                continue
            original = changes[0].before
            current = hook.get_record(zone_id, rec.name, rec.type)
            weighted = [
                r for r in hook.get_record_sets(zone_id, rec.name, rec.type) if r.get("SetIdentifier") in WEIGHTED_SETS
            ]
            if current == original and not weighted:
                self.log.info("%s: already as it was (%s, TTL %s)", rec.name, record_value(original), original["TTL"])
                continue
            if weighted and self.would(context, Action.RESTORE_RECORD, target, weighted, original):
                continue
            if weighted:  # a weighted switch stopped half-way: its sets go, the original comes back, in one batch
                with self.changing(context, Action.RESTORE_RECORD, target, weighted, original):
                    hook.wait_for_change_insync(
                        hook.change_records(
                            zone_id,
                            [("DELETE", r) for r in weighted] + [("CREATE", original)],
                            f"ferry restore {rec.name}",
                        )
                    )
                self.log.info("%s: weighted sets removed, restored to %s", rec.name, record_value(original))
            else:
                self.change(context, hook, zone_id, Action.RESTORE_RECORD, current, original)
            restored += 1
        return restored


class Route53RouteWebhooksToRecorderOperator(_Route53Operator):
    """Point the webhook host name at the recorder (``webhooks.recorder_address``), INSYNC and verified.

    Inverse: Route53RestoreRecordsOperator; D-day later points it at the new app with
    Route53SwitchRecordsOperator.

    :param from_new_side: also when the host already points at the new app (a rollback after the cutover:
        webhooks are kept by the recorder until the old app serves again); else that means "cutover done".
    """

    def __init__(self, *, from_new_side: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_new_side = from_new_side

    def execute(self, context: Any) -> bool:
        hooks = self.plan.webhooks
        if hooks is None or not hooks.recorder_address:
            raise AirflowFailException("webhooks.recorder_address: set it to the recorder's load balancer name")
        self.records = [hooks.host]
        hook, zone_id, live = self.checked_records("old_or_new")
        ((_, rec, current),) = live
        if record_value(current) == hooks.recorder_address:
            self.log.info("%s already points at the recorder", rec.name)
            return False
        if self.from_new_side and record_value(current) != rec.new_value:
            self.log.info("%s no longer points at the new app (given back already); nothing to do", rec.name)
            return False
        if record_value(current) == rec.new_value and not self.from_new_side:
            self.log.info("%s already points at the new app (cutover done); nothing to do", rec.name)
            return False
        self.change(
            context,
            hook,
            zone_id,
            Action.SWITCH_RECORD,
            current,
            record_set(rec.name, rec.type, hooks.recorder_address, min(current["TTL"], rec.low_ttl)),
        )
        return True
