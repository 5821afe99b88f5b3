"""What every pre-flight check shares: its result, and the two databases' hooks."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ferry.hooks.replication import ReplicationHook
from ferry.plan import Plan

Status = Literal["pass", "warn", "fail", "skip"]


@dataclasses.dataclass
class CheckResult:
    """What one check found."""

    check: str
    status: Status
    summary: str
    findings: list[str] = dataclasses.field(default_factory=list)
    remedy: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(**data)


def source_hook(plan: Plan) -> ReplicationHook:
    return ReplicationHook.for_side(plan, "source")


def target_hook(plan: Plan) -> ReplicationHook:
    return ReplicationHook.for_side(plan, "target")
