"""When ferry_rollback may drop the schema Ferry copied to the target: never once D-day pointed the
application's DNS at the new side, whatever the webhook host did."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.hooks.route53 import record_set
from ferry.ledger import LedgerRecord, switched_to_new_side
from ferry.plan import load_plan

ROOT = Path(__file__).resolve().parents[2]
COPIED_AT = "2026-11-20T10:00:00+00:00"


@pytest.fixture(scope="module")
def plan():
    return load_plan(ROOT / "include" / "stand" / "plan.stand.yaml")


def dns(action: str, name: str, value, at: str = "2026-11-27T10:00:00+00:00") -> LedgerRecord:
    after = record_set(name, "CNAME", value, 60) if isinstance(value, str) else value
    return LedgerRecord(
        stage="ferry_d_day", task="t", action=action, target=f"dns:{name}.CNAME", before=None, after=after, at=at
    )


def test_the_app_record_switched_to_its_new_value_after_the_copy_is_found(plan):
    history = [
        dns("lower_ttl", "app.stand.example.com", "old-lb.stand.example.net"),
        dns("switch_record", "app.stand.example.com", "new-lb.stand.example.net"),
    ]
    assert switched_to_new_side(plan, history, since=COPIED_AT) is history[1]


def test_a_weighted_step_on_the_app_record_counts_as_switched(plan):
    history = [dns("weight_step", "app.stand.example.com", 10)]
    assert switched_to_new_side(plan, history, since=COPIED_AT) is history[0]


def test_the_webhook_host_routed_to_the_recorder_a_ttl_change_or_an_older_switch_do_not(plan):
    history = [
        dns("switch_record", "app.stand.example.com", "new-lb.stand.example.net", at="2026-11-19T10:00:00+00:00"),
        dns("lower_ttl", "app.stand.example.com", "old-lb.stand.example.net"),
        dns("switch_record", "hooks.stand.example.com", "recorder-lb.stand.example.net"),
        dns("switch_record", "hooks.stand.example.com", "new-lb.stand.example.net"),
        dns("restore_record", "app.stand.example.com", "old-lb.stand.example.net"),
    ]
    assert switched_to_new_side(plan, history, since=COPIED_AT) is None
