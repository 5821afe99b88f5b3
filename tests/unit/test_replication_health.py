"""One rule for the health of both directions of replication (``ferry.guards.replication_health``).

The two sides are stood in for by what their catalogs would answer (a slot that lost its WAL cannot be made on
demand on a live server); the rules themselves run unchanged. The stand's tests cover the live cases (a disabled
subscription in the pre-flight, the reverse replication in ferry_decommission and the way back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ferry.guards import forward_link, replication_health, reverse_link
from ferry.plan import load_plan as _load_plan

STAND_PLAN = Path(__file__).parents[2] / "include" / "stand" / "plan.stand.yaml"


def load_plan():
    """The stand's plan: it has replication.reverse."""
    return _load_plan(STAND_PLAN)


@dataclass
class Catalog:
    """What one server answers about a subscription on it and a slot on it."""

    subscriptions: dict = field(default_factory=dict)
    slots: dict = field(default_factory=dict)

    def get_subscription_status(self, name):
        return self.subscriptions.get(name)

    def get_slot_status(self, name):
        return self.slots.get(name)


def subscription(enabled=True, worker=True, errors=0):
    return {"enabled": enabled, "worker_pid": 4242 if worker else None, "apply_error_count": errors}


def slot(lag=0, wal_status="reserved", retained=1000, limit=None):
    return {
        "active": True,
        "wal_status": wal_status,
        "lag_bytes": lag,
        "retained_bytes": retained,
        "max_slot_wal_keep_bytes": limit,
    }


def both_directions(plan, sub, sl):
    """The forward and the reverse link, each with ``sub`` on its subscriber and ``sl`` on its publisher."""
    source, target = Catalog(), Catalog()
    target.subscriptions[plan.subscription], source.slots[plan.subscription] = sub, sl
    source.subscriptions[plan.reverse_subscription], target.slots[plan.reverse_subscription] = sub, sl
    return forward_link(plan, source, target), reverse_link(plan, source, target)


CASES = {
    "streaming": (subscription(), slot(), "ok"),
    "disabled": (subscription(enabled=False, errors=2), slot(), "problem"),
    "no apply worker": (subscription(worker=False, errors=1), slot(), "problem"),
    "slot missing": (subscription(), None, "problem"),
    "subscription missing": (None, slot(), "problem"),
    "WAL lost": (subscription(), slot(wal_status="lost"), "problem"),
    "near max_slot_wal_keep_size": (subscription(), slot(retained=900, limit=1000), "problem"),
    "past apply errors, streaming again": (subscription(errors=3), slot(), "warning"),
    "lag above the threshold": (subscription(), slot(lag=10**12), "behind"),
}


@pytest.mark.parametrize("case", CASES)
def test_both_directions_judge_the_same_state_alike(case):
    plan = load_plan()
    assert plan.replication.reverse is not None
    sub, sl, expected = CASES[case]
    verdicts = []
    for link in both_directions(plan, sub, sl):
        health = replication_health(link)
        verdict = (
            "problem"
            if health["problems"]
            else "warning"
            if health["warnings"]
            else "behind"
            if health["behind"]
            else "ok"
        )
        verdicts.append(verdict)
        text = " ".join(health["problems"] + health["warnings"] + [health["behind"] or ""])
        assert link.subscription in text or verdict in ("ok", "behind"), text
        if verdict != "ok":
            # each message names the side it is about, in that direction's words
            assert link.subscriber_label in text or link.publisher_label in text, text
    assert verdicts == [expected, expected], case


def test_no_replication_either_way_is_none():
    plan = load_plan()
    for link in both_directions(plan, None, None):
        assert replication_health(link) is None


def test_lag_names_the_threshold_of_its_direction():
    plan = load_plan()
    forward, reverse = both_directions(plan, subscription(), slot(lag=10**12))
    assert "thresholds.max_lag_bytes" in replication_health(forward)["behind"]
    assert "replication.reverse.max_lag_bytes" in replication_health(reverse)["behind"]
    assert "the old source is" in replication_health(reverse)["behind"]
