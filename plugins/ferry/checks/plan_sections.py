"""Pre-flight check of the plan itself: every section the stage needs is there."""

from __future__ import annotations

from ferry.checks.base import CheckResult
from ferry.plan import STAGE_SECTIONS, Plan, missing_sections


def check_plan_sections(plan: Plan, stage: str | None = None) -> CheckResult:
    """The plan has every section the stage needs (in ferry_preflight: every stage, as warnings)."""
    if stage in STAGE_SECTIONS:
        stages = [stage]
    elif stage in (None, "ferry_preflight"):  # the scheduled pre-flight looks ahead at every stage
        stages = list(STAGE_SECTIONS)
    else:  # ferry_rollback undoes what the ledger holds, whatever the plan has
        stages = []
    gaps = {s: missing_sections(plan, s) for s in stages}
    findings = [f"{s} needs {section} ({tasks}): missing" for s, missing in gaps.items() for section, tasks in missing]
    if not findings:
        return CheckResult("plan_sections", "pass", "the plan has every section " + (stage or "each stage") + " needs")
    remedy = "Add each missing section to the plan (see include/plan.example.yaml), then run again."
    if stage in STAGE_SECTIONS:
        return CheckResult(
            "plan_sections",
            "fail",
            f"{stage} cannot run without {', '.join(s for s, _ in gaps[stage])}",
            findings,
            remedy,
        )
    return CheckResult(
        "plan_sections", "warn", f"{len(findings)} section(s) missing for later stages", findings, remedy
    )
