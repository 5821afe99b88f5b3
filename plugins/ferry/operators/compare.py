"""Operators of the data comparison: the tables to compare, one mapped task per table, and the report."""

from __future__ import annotations

from typing import Any

from airflow.sdk import TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from ferry import report
from ferry.compare import Comparer
from ferry.operators.base import FerryOperator, pull_all


class ReplicationListTablesOperator(FerryOperator):
    """The tables to compare, by the plan's ``compare_mode`` (or ``tables`` given here), one per mapped task.

    :param tables: names to compare instead of the plan's choice (``schema.table`` or ``table``).
    """

    template_fields = ("tables",)

    def __init__(self, *, tables: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = tables

    def execute(self, context: Any) -> list[str]:
        rows = self.scope_table_rows(self.source)
        every = [t["qualified"] for t in rows]
        chosen = (
            self.tables
            or self.param(context, "tables", None)
            or (self.plan.thresholds.compare_tables if self.plan.thresholds.compare_mode == "tables" else None)
        )
        if not chosen:
            return every
        unqualified = {t["table"]: t["qualified"] for t in rows}
        picked, unknown = [], []
        for name in chosen:
            match = name if name in every else unqualified.get(name)
            (picked if match else unknown).append(match or name)
        if unknown:
            raise AirflowFailException(
                f"tables to compare not in scope: {', '.join(unknown)}; in scope: {', '.join(every)}"
            )
        return picked


class ReplicationCompareTableOperator(FerryOperator):
    """Compare one table between source and target (count and content hash by key range); fail on a difference.

    Meant to be mapped over ReplicationListTablesOperator's output. The result goes to XCom
    (``comparison``) before the task ends, equal or not, for the report.

    :param table: the quoted, schema-qualified table name.
    """

    template_fields = ("table",)

    def __init__(self, *, table: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table

    def execute(self, context: Any) -> dict[str, Any]:
        thresholds = self.plan.thresholds
        mode = "counts" if thresholds.compare_mode == "counts" else "full"
        comparer = Comparer(self.source, self.target, concurrency=thresholds.compare_concurrency)
        result = comparer.compare_table(self.table, mode)
        self.log.info(
            "%s: %s; %d rows on the source, %d on the target; %d key ranges (%d compared in all) in %.2f s",
            self.table,
            "EQUAL" if result.equal else "DIFFERENT",
            result.rows_source,
            result.rows_target,
            result.chunks,
            result.ranges_compared,
            result.seconds,
        )
        for label, keys in (
            ("missing on the target", result.missing_on_target),
            ("only on the target", result.extra_on_target),
            ("changed", result.changed),
        ):
            if keys:
                self.log.error("  keys %s: %s", label, ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
        for row in result.differing_rows[:20]:
            self.log.error(
                "  row hash %s: %d on the source, %d on the target", row["row_hash"], row["source"], row["target"]
            )
        context["ti"].xcom_push(key="comparison", value=result.to_dict())
        if not result.equal and self.is_dry_run(context):
            self.log.warning("DRY RUN: %s differs; a real run (source fenced first) would stop here", self.table)
        elif not result.equal:
            raise AirflowFailException(
                f"{self.table} differs between source and target ({result.differences} difference(s) named in the log). "
                "Do not cut over: run ferry_rollback, or find why the target diverged."
            )
        return result.to_dict()


class ReplicationCompareReportOperator(FerryOperator):
    """Gather every table's comparison, write the report (log and Markdown file), fail when anything differs.

    :param list_task_id: the task id of ReplicationListTablesOperator (the tables that should be reported).
    :param compare_task_id: the task id of the mapped comparison task.
    """

    def __init__(self, *, list_task_id: str, compare_task_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.list_task_id = list_task_id
        self.compare_task_id = compare_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        results = pull_all(context, self.compare_task_id, "comparison")
        expected = context["ti"].xcom_pull(task_ids=self.list_task_id) or []
        compared = {r["table"] for r in results}
        unreported = [t for t in expected if t not in compared]
        path = report.write(self.plan, "compare", context, report.render_comparison(results, unreported))
        differing = [r["table"] for r in results if not r["equal"]] + unreported
        if differing and self.is_dry_run(context):
            self.log.warning("DRY RUN: %s differ while the source takes writes; not failing", ", ".join(differing))
        elif differing or not results:
            raise AirflowFailException(
                f"source and target differ (or were not compared): {', '.join(differing) or 'no table'}"
            )
        return {
            "equal": True,
            "tables": len(results),
            "rows": sum(r["rows_source"] for r in results),
            "report_path": str(path),
        }
