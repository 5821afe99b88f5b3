"""The ledger's vocabulary and its changes: intents and outcomes paired, unknown actions refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ferry.ledger import Action, LedgerRecord, Target, merge

ROOT = Path(__file__).resolve().parents[2]


def entry(action: str, phase: str, change_id: str, after=None, at: str = "2026-11-28T10:00:00+00:00") -> LedgerRecord:
    return LedgerRecord(
        stage="s", task="t", action=action, target="x:y", after=after, phase=phase, change_id=change_id, at=at
    )


def test_an_unknown_action_is_refused():
    with pytest.raises(ValueError, match="unknown ledger action 'scale_deplyment'"):
        LedgerRecord(stage="s", task="t", action="scale_deplyment", target=Target.k8s("ns", "web"))
    assert LedgerRecord(stage="s", task="t", action="scale_deployment", target="k8s:ns/web").action is (
        Action.SCALE_DEPLOYMENT
    )


def test_targets_are_built_and_read_back():
    assert Target.dns("app.example.com.", "CNAME") == "dns:app.example.com.CNAME"
    assert Target.ssm("/prod/DB").name == "/prod/DB" and Target.ssm("/prod/DB").kind == "ssm"
    assert Target.k8s_object("saas", "Service", "webhook-recorder").k8s_kind_and_name == ("Service", "webhook-recorder")
    assert Target.vm("vm-1", "saas-web") == "vm:vm-1:saas-web"


def test_a_change_is_its_intent_merged_with_its_outcome():
    entries = [
        entry("put_parameter", "intent", "a", {"phase": "cutover"}, "2026-11-28T10:00:00+00:00"),
        entry("stop_unit", "intent", "b", {"active": False}, "2026-11-28T10:00:01+00:00"),  # died half-way
        entry("put_parameter", "done", "a", {"phase": "cutover", "version": 3}, "2026-11-28T10:00:02+00:00"),
    ]
    changes = merge(entries)
    assert [(c.action, c.phase) for c in changes] == [("put_parameter", "done"), ("stop_unit", "intent")]
    assert changes[0].after == {"phase": "cutover", "version": 3} and changes[0].at == "2026-11-28T10:00:00+00:00"
    assert changes[0].finished_at == "2026-11-28T10:00:02+00:00" and not changes[1].done


def test_no_ledger_string_is_spelt_outside_the_ledger_module():
    """Every action and target in the product's code comes from ferry.ledger (Action, Target)."""
    actions = "|".join(a.value for a in Action)
    pattern = rf'"({actions})"|f"(dns|k8s|ssm|rds|vm|s3|stage|webhooks|source|target):'
    found = subprocess.run(
        ["grep", "-rnE", pattern, "plugins", "dags", "include", "bench", "--include=*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    # Task ids share some of these names (task_id="fence_source"); they are not ledger strings.
    assert [line for line in found if not line.startswith("plugins/ferry/ledger.py:") and "task_id=" not in line] == []
