"""Route53 operators: lower TTLs ahead of time, switch records, and restore them exactly."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.hooks.route53 import Route53Hook, record_set, record_value
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

    def change(self, context: Any, hook: Route53Hook, zone_id: str, action: str, before: dict, after: dict) -> None:
        """UPSERT ``after``, record it, wait for INSYNC and read it back (on a dry run: report it only)."""
        if self.would(context, action, f"dns:{after['Name']}{after['Type']}", before, after):
            return
        self.record(context, action, f"dns:{after['Name']}{after['Type']}", before, after)
        change_id = hook.upsert_record(zone_id, after, f"ferry {action} {after['Name']}")
        hook.wait_for_change_insync(change_id)
        back = hook.get_record(zone_id, after["Name"], after["Type"])
        if back is None or record_value(back) != record_value(after) or back.get("TTL") != after["TTL"]:
            raise AirflowFailException(f"{after['Name']}: reads back as {back}, not {after}")
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
        changed = 0
        for _, rec, current in live:
            if current["TTL"] <= rec.low_ttl:
                self.log.info("%s: TTL already %s", rec.name, current["TTL"])
                continue
            self.change(context, hook, zone_id, "lower_ttl", current, {**current, "TTL": rec.low_ttl})
            changed += 1
        return changed


class Route53SwitchRecordsOperator(_Route53Operator):
    """Point each record at its ``new_value`` (with its low TTL), wait for INSYNC, verify by reading back.

    Inverse: Route53RestoreRecordsOperator.

    :param records: names of the plan's records to switch (default: all).
    """

    def execute(self, context: Any) -> int:
        hook, zone_id, live = self.checked_records("old_or_new")
        changed = 0
        for _, rec, current in live:
            if record_value(current) == rec.new_value:
                self.log.info("%s: already points at %s", rec.name, rec.new_value)
                continue
            self.change(
                context,
                hook,
                zone_id,
                "switch_record",
                current,
                record_set(rec.name, rec.type, rec.new_value, min(current["TTL"], rec.low_ttl)),
            )
            changed += 1
        return changed


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
            target = f"dns:{rec.name.rstrip('.')}.{rec.type}"
            changes = [r for r in history if r.target == target and r.action in ("lower_ttl", "switch_record")]
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
            if weighted and self.would(context, "restore_record", target, weighted, original):
                continue
            if weighted:  # a weighted switch stopped half-way: its sets go, the original comes back, in one batch
                self.record(context, "restore_record", target, weighted, original)
                hook.wait_for_change_insync(
                    hook.change_records(
                        zone_id, [("DELETE", r) for r in weighted] + [("CREATE", original)], f"ferry restore {rec.name}"
                    )
                )
                self.log.info("%s: weighted sets removed, restored to %s", rec.name, record_value(original))
            else:
                self.change(context, hook, zone_id, "restore_record", current, original)
            restored += 1
        return restored


class Route53RouteWebhooksToRecorderOperator(_Route53Operator):
    """Point the webhook host name at the recorder (``webhooks.recorder_address``), INSYNC and verified.

    Inverse: Route53RestoreRecordsOperator; D-day later points it at the new app with
    Route53SwitchRecordsOperator.
    """

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
        if record_value(current) == rec.new_value:
            self.log.info("%s already points at the new app (cutover done); nothing to do", rec.name)
            return False
        self.change(
            context,
            hook,
            zone_id,
            "switch_record",
            current,
            record_set(rec.name, rec.type, hooks.recorder_address, min(current["TTL"], rec.low_ttl)),
        )
        return True


class Route53WeightedSwitchOperator(_Route53Operator):
    """Move each record to its ``new_value`` in weighted steps (say 10%, 50%, 100% of answers), INSYNC at each step.

    The simple record becomes two weighted sets (``ferry-old`` and ``ferry-new``), their weights
    move step by step with ``pause_s`` between steps to watch the new side, and the last step
    (100) leaves a simple record with the new value. A re-run resumes from the live weights.
    Inverse: Route53RestoreRecordsOperator, also from half-way.

    :param steps: percentages of answers for the new value, ascending, ending at 100.
    :param pause_s: seconds between steps.
    :param records: names of the plan's records (default: all).
    """

    def __init__(self, *, steps: list[int] | None = None, pause_s: float = 60, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps = steps or [10, 50, 100]
        self.pause_s = pause_s
        if self.steps != sorted(self.steps) or self.steps[-1] != 100 or self.steps[0] <= 0:
            raise ValueError(f"steps must rise from above 0 to 100, got {self.steps}")

    def execute(self, context: Any) -> int:
        hook, zone_id = self.zone()
        dns = self.plan.dns
        plans, problems = [], []
        for i, rec in enumerate(dns.records):
            if self.records is not None and rec.name not in self.records:
                continue
            sets = hook.get_record_sets(zone_id, rec.name, rec.type)
            simple = next((r for r in sets if "SetIdentifier" not in r), None)
            weighted = {r["SetIdentifier"]: r for r in sets if r.get("SetIdentifier") in WEIGHTED_SETS}
            if simple and record_value(simple) == rec.new_value:
                self.log.info("%s: already points at %s", rec.name, rec.new_value)
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
        for rec, simple, weighted in plans:
            ttl = rec.low_ttl
            current = weighted["ferry-new"]["Weight"] if weighted else 0
            if self.would(
                context,
                "weight_step",
                f"dns:{rec.name.rstrip('.')}.{rec.type}",
                current,
                [s for s in self.steps if s > current],
            ):
                continue
            if simple:
                self.record(
                    context,
                    "switch_record",
                    f"dns:{rec.name.rstrip('.')}.{rec.type}",
                    simple,
                    record_set(rec.name, rec.type, rec.new_value, ttl),
                )
            current = weighted["ferry-new"]["Weight"] if weighted else 0
            for step in (s for s in self.steps if s > current):
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
                self.record(context, "weight_step", f"dns:{rec.name.rstrip('.')}.{rec.type}", current, step)
                hook.wait_for_change_insync(
                    hook.change_records(zone_id, changes, f"ferry weighted switch {rec.name} {step}%")
                )
                self.log.info("%s: %d%% of answers now %s (INSYNC)", rec.name, step, rec.new_value)
                simple, weighted, current = None, {"ferry-old": old_set, "ferry-new": new_set}, step
                if step < 100:
                    time.sleep(self.pause_s)
            back = hook.get_record(zone_id, rec.name, rec.type)
            if record_value(back) != rec.new_value:
                raise AirflowFailException(f"{rec.name}: reads back as {back}, not {rec.new_value}")
        return len(plans)
