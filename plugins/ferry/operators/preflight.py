"""Operators of the pre-flight checks: one task per check, and the go/no-go report."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseOperator, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from ferry import report
from ferry.operators.base import Timed
from ferry.plan import load_runtime_plan
from ferry.preflight import CHECKS, CheckResult
from ferry.redaction import plan_secrets, redact

RESULT_KEY = "check_result"


class PreflightRunCheckOperator(Timed, BaseOperator):
    """Run one read-only pre-flight check, log what it found, and fail (without retrying) when it blocks.

    The result is pushed to XCom under ``check_result`` before the task ends, pass or fail, so the
    report sees every check. Connection errors raise normally and are retried.

    :param check: the check's name, a key of ``ferry.preflight.CHECKS``.
    """

    ui_color = "#e8f4fd"

    def __init__(self, *, check: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if check not in CHECKS:
            raise ValueError(f"unknown pre-flight check {check!r}; known: {', '.join(CHECKS)}")
        self.check = check

    def execute(self, context: Any) -> str:
        plan = load_runtime_plan()
        secrets = plan_secrets(plan)
        self.log.info("Check %s: %s", self.check, CHECKS[self.check].__doc__)
        check = CHECKS[self.check]
        stage = {"stage": context["dag"].dag_id} if "stage" in inspect.signature(check).parameters else {}
        found = check(plan, **stage)
        result = CheckResult(
            check=found.check,
            status=found.status,
            summary=redact(found.summary, secrets),
            findings=[redact(f, secrets) for f in found.findings],
            remedy=redact(found.remedy, secrets),
        )
        for finding in result.findings:
            self.log.info("  %s", finding)
        self.log.info("Result: %s: %s", result.status.upper(), result.summary)
        context["ti"].xcom_push(key=RESULT_KEY, value=result.to_dict())
        if result.status == "fail":
            self.log.error("What to do: %s", result.remedy)
            raise AirflowFailException(f"{self.check} failed: {result.summary}. What to do: {result.remedy}")
        if result.status == "warn":
            self.log.warning("What to do: %s", result.remedy)
        return result.status


class PreflightWriteReportOperator(Timed, BaseOperator):
    """Gather every check's result, write the go/no-go report (log and Markdown file), fail on NO-GO.

    Runs whatever its checks ended with; a check that ended without a result (it crashed or
    could not reach its system) counts as failed.

    :param check_task_ids: the task ids of the check tasks to report on.
    """

    ui_color = "#fdf6e3"

    def __init__(self, *, check_task_ids: Sequence[str], **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.check_task_ids = list(check_task_ids)

    def execute(self, context: Any) -> dict[str, Any]:
        plan = load_runtime_plan()
        secrets = plan_secrets(plan)
        ti = context["ti"]
        results = []
        for task_id in self.check_task_ids:
            pushed = ti.xcom_pull(task_ids=task_id, key=RESULT_KEY)
            if pushed:
                results.append(CheckResult.from_dict(pushed))
            else:
                results.append(
                    CheckResult(
                        task_id.rsplit(".", 1)[-1],
                        "fail",
                        "the check ended without a result (an error before it could decide)",
                        remedy=f"Read the log of task {task_id}, fix the cause and run again.",
                    )
                )
        go, markdown = report.render_preflight(
            plan.name, results, context["run_id"], datetime.now(UTC).isoformat(timespec="seconds")
        )
        path = report.write(plan, "preflight", context, redact(markdown, secrets))
        verdict = {"go": go, "report_path": str(path), "failed": [r.check for r in results if r.status == "fail"]}
        if not go:
            raise AirflowFailException(
                f"NO-GO: {', '.join(verdict['failed'])} failed. "
                f"Read the report at {path}; each failed check says what to do."
            )
        return verdict
