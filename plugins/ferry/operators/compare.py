"""Operators of the data comparison: the tables to compare, one mapped task per table, and the report."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from ferry import report
from ferry.capture import SIDES, CaptureStore, capture_id
from ferry.compare import Comparer
from ferry.operators.base import FerryOperator, pull_all
from ferry.operators.capture import CaptureOperator
from ferry.plan import Plan
from ferry.progress import compare_line

PROGRESS_EVERY_S = 30.0  # a large table's live comparison: at most a progress line every 30 s


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
        context["ti"].xcom_push(key="scope", value=every)  # what a narrowed comparison leaves unverified
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


def _log_result(log: Any, result: Any) -> None:
    for label, keys in (
        ("missing on the target", result.missing_on_target),
        ("only on the target", result.extra_on_target),
        ("changed", result.changed),
    ):
        if keys:
            log.error("  keys %s: %s", label, ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
    for row in result.differing_rows[:20]:
        log.error("  row hash %s: %d on the source, %d on the target", row["row_hash"], row["source"], row["target"])


class ReplicationCompareLiveOperator(FerryOperator):
    """Compare one table while the application writes and replication streams (before the fence).

    A range that differs is compared again (replication may be behind), then narrowed to small ranges
    that are carried into the freeze; nothing fails here. Runs after start_change_capture: every row
    changed after this comparison looked at it is captured and verified in the freeze. The result goes to
    XCom (``live``). With ``thresholds.compare_in_freeze: full`` it does nothing.

    :param table: the quoted, schema-qualified table name.
    """

    template_fields = ("table",)

    def __init__(self, *, table: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table

    def execute(self, context: Any) -> dict[str, Any] | None:
        thresholds = self.plan.thresholds
        if thresholds.compare_in_freeze == "full":
            self.log.info("thresholds.compare_in_freeze is 'full': %s is compared in the freeze only", self.table)
            return None
        states = {side: CaptureStore(self.plan).load(side) for side in SIDES}
        capture = capture_id(states)
        if capture is None and not self.is_dry_run(context):
            raise AirflowFailException("no change capture was started: run start_change_capture first")
        started_at = datetime.now(UTC).isoformat()
        said = {"at": None}

        def progress(table: str, rows: int, estimated: int, elapsed_s: float) -> None:
            """A large table's comparison after each tenth: a line at most every 30 s (and the first)."""
            if said["at"] is None or elapsed_s - said["at"] >= PROGRESS_EVERY_S:
                said["at"] = elapsed_s
                self.log.info("Comparing live %s", compare_line(table, rows, estimated, elapsed_s))

        comparer = Comparer(self.source, self.target, concurrency=thresholds.compare_concurrency, progress=progress)
        result = comparer.compare_live(
            self.table,
            "counts" if thresholds.compare_mode == "counts" else "full",
            retries=thresholds.compare_live_retries,
            wait_s=thresholds.compare_live_retry_wait_s,
        )
        result.capture, result.started_at = capture or "", started_at
        self.log.info(
            "%s (live): %d rows on the source, %d on the target; %d key ranges (%d compared in all) in %.2f s; %s",
            self.table,
            result.rows_source,
            result.rows_target,
            result.chunks,
            result.ranges_compared,
            result.seconds,
            "every range matched"
            if result.equal
            else f"carried into the freeze: the whole table ({result.carried_whole})"
            if result.carried_whole
            else f"carried into the freeze: {len(result.carried)} small key range(s) and {len(result.carried_hashes)} "
            "row(s) of a table without a key still differing",
        )
        for lower, upper in result.carried[:20]:
            self.log.info("  carried: keys from %s to %s", lower or "the first", upper or "the last")
        context["ti"].xcom_push(key="live", value=result.to_dict())
        return result.to_dict()


def why_compare_whole(plan: Plan, table: str, live: dict[str, Any] | None, states: dict[str, Any]) -> str:
    """Why ``table`` must be compared whole in the freeze rather than by its captured changes; empty when
    it need not be."""
    if plan.thresholds.compare_in_freeze == "full":
        return "thresholds.compare_in_freeze is 'full'"
    if live is None:
        return "it has no live comparison"
    capture = capture_id(states)
    if capture is None:
        return "no change capture was started"
    broken = [f"{s.side}: {s.broken}" for s in states.values() if s.broken]
    if broken:
        return "the change capture broke (" + "; ".join(broken) + ")"
    if live["capture"] != capture:
        return "its live comparison ran under another change capture"
    if not all(s.drains for s in states.values()):
        return "the change capture was never drained"
    if live["carried_whole"]:
        return live["carried_whole"]
    whole = [s.tables[table].whole for s in states.values() if table in s.tables]
    return next((w for w in whole if w), "")


def _log_whole(log: Any, result: Any, because: str | None) -> None:
    log.info(
        "%s: %s; %d rows on the source, %d on the target; %d key ranges (%d compared in all) in %.2f s%s",
        result.table,
        "EQUAL" if result.equal else "DIFFERENT",
        result.rows_source,
        result.rows_target,
        result.chunks,
        result.ranges_compared,
        result.seconds,
        f" (compared whole: {because})" if because else "",
    )
    _log_result(log, result)


DIFFERENCE_LISTS = ("missing_on_target", "extra_on_target", "changed", "differing_rows")


def write_comparison_report(
    operator: FerryOperator,
    context: Any,
    results: list[dict[str, Any]],
    expected: list[str],
    live: list[Any],
    fix: str = "",
    unverified: list[str] | None = None,
) -> dict[str, Any]:
    """Write the comparison report (log and Markdown file); fail when a table differs or was not compared
    (a dry run only warns: the source still takes writes). ``fix`` ends the failure's message; ``unverified``
    says what a narrowed comparison did not verify."""
    compared = {r["table"] for r in results}
    unreported = [t for t in expected if t not in compared]
    path = report.write(
        operator.plan, "compare", context, report.render_comparison(results, unreported, live, unverified)
    )
    differing = [r["table"] for r in results if not r["equal"]] + unreported
    if differing and operator.is_dry_run(context):
        operator.log.warning("DRY RUN: %s differ while the source takes writes; not failing", ", ".join(differing))
    elif differing or not results:
        count = sum(len(r.get(k) or []) for r in results for k in DIFFERENCE_LISTS)
        raise AirflowFailException(
            f"source and target differ (or were not compared): {', '.join(differing) or 'no table'}"
            + (f" ({count} difference(s) named in the log)" if count else "")
            + (f". {fix}" if fix else "")
        )
    operator.log.info("Comparison report: %s", path)
    return {
        "equal": True,
        "tables": len(results),
        "rows": sum(r["rows_source"] for r in results),
        "report_path": str(path),
    }


def _fail_on_differences(operator: FerryOperator, context: Any, results: list[Any]) -> None:
    differing = [r.table for r in results if not r.equal]
    if differing and operator.is_dry_run(context):
        operator.log.warning(
            "DRY RUN: %s differ; a real run (source fenced first) would stop here", ", ".join(differing)
        )
    elif differing:
        count = sum(r.differences for r in results)
        raise AirflowFailException(
            f"{', '.join(differing)} differ between source and target ({count} difference(s) named in the log). "
            "Do not cut over: run ferry_rollback, or find why the target diverged."
        )


class ReplicationCompareChangesOperator(CaptureOperator):
    """In the freeze, after the catch-up: drain the change capture a last time (both sides), then verify
    every table whose live comparison ran under the capture, by exactly the rows captured as changed on
    either side since the capture began and the ranges the live comparison left open (tables verified
    side by side, in one task). A table nothing touched is not read. Results go to XCom (``comparison``, a list) before the task ends; it fails when
    anything differs.

    Some tables must be compared whole instead (all of them with ``thresholds.compare_in_freeze: full``, a
    dry run, a broken or restarted capture, a table truncated); why, per table, goes to XCom
    (``whole_because``) and to the log.

    With ``compare_whole`` (D-day) this task compares those too, beside the others, and writes the comparison
    report (as ReplicationCompareReportOperator does): the write freeze then holds one task where it held three
    (each boundary between two tasks costs 0.3 to 0.6 s of scheduling there). It returns the report's summary.
    Without it, it returns the tables to compare whole, for a mapped ReplicationCompareTableOperator.

    :param list_task_id: the tables to compare (ReplicationListTablesOperator).
    :param live_task_id: the mapped live comparison.
    :param compare_whole: compare here what cannot be verified by its changes, and write the report.
    :param no_person_after: no person is asked after this comparison (D-day with ``thresholds.comparison_gate:
        auto``): it fails, after its report, unless everything was verified, so a narrowed comparison (the
        trigger form's tables, say) never reaches the cutover unanswered.
    """

    def __init__(
        self,
        *,
        list_task_id: str = "list_tables",
        live_task_id: str = "compare_live",
        compare_whole: bool = False,
        no_person_after: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.list_task_id, self.live_task_id, self.compare_whole = list_task_id, live_task_id, compare_whole
        self.no_person_after = no_person_after

    def execute(self, context: Any) -> list[str] | dict[str, Any]:
        thresholds = self.plan.thresholds
        tables = context["ti"].xcom_pull(task_ids=self.list_task_id) or []
        scope = context["ti"].xcom_pull(task_ids=self.list_task_id, key="scope") or tables
        self.check_fenced_tables_compared(context, tables, scope)
        drained = self.drain_captures(context)
        context["ti"].xcom_push(key="drained", value=drained)
        live_results = pull_all(context, self.live_task_id, "live")
        lives = {r["table"]: r for r in live_results}
        states = self.drained_states or {side: self.store.load(side) for side in SIDES}
        reasons = {t: why_compare_whole(self.plan, t, lives.get(t), states) for t in tables}
        whole = [t for t in tables if reasons[t]]
        for table in whole:
            self.log.warning(
                "%s: to be compared whole in the freeze (%s): %s",
                table,
                "here" if self.compare_whole else "compare_data",
                reasons[table],
            )
        context["ti"].xcom_push(key="whole_because", value={t: reasons[t] for t in whole})
        changed = [t for t in tables if not reasons[t]]
        mode = "counts" if thresholds.compare_mode == "counts" else "full"
        comparer = Comparer(self.source, self.target, concurrency=thresholds.compare_concurrency)
        started_at = datetime.now(UTC).isoformat()

        def verify(table: str) -> Any:
            captured = [s.tables[table] for s in states.values() if table in s.tables]
            keys = set().union(*(c.keys for c in captured)) if captured else set()
            rows = set().union(*(c.rows for c in captured)) if captured else set()
            live = lives[table]
            result = comparer.verify_tail(table, mode, live["carried"], keys, rows, live.get("carried_hashes"))
            result.capture, result.started_at = live["capture"], started_at
            return result

        def compare(table: str) -> Any:
            result = comparer.compare_table(table, mode)
            result.carried_whole, result.started_at = reasons[table], datetime.now(UTC).isoformat()
            return result

        wholes = whole if self.compare_whole else []
        with comparer, ThreadPoolExecutor(max_workers=max(1, min(4, len(changed) + len(wholes)))) as pool:
            compared = [pool.submit(compare, t) for t in wholes]  # the long ones first
            results = list(pool.map(verify, changed))
            whole_results = [f.result() for f in compared]
        for result in whole_results:
            _log_whole(self.log, result, reasons[result.table])
        for result in results:
            carried = len(lives[result.table]["carried"])
            self.log.info(
                "%s: %s; %s in %.2f s",
                result.table,
                "EQUAL" if result.equal else "DIFFERENT",
                f"{result.keys_verified} key(s) and {result.rows_verified} keyless row(s) changed since its live "
                f"comparison verified, {carried} carried range(s) compared again"
                if result.keys_verified or result.rows_verified or carried
                else "unchanged since its live comparison matched; not read again",
                result.seconds,
            )
            _log_result(self.log, result)
        results += whole_results
        context["ti"].xcom_push(key="comparison", value=[r.to_dict() for r in results])
        unverified = not_verified(self.plan, tables, scope)
        context["ti"].xcom_push(
            key="verdict",
            value="Source and target are equal"
            if not unverified
            else "The tables compared are equal, but NOT everything was verified: " + "; ".join(unverified),
        )
        for line in unverified:
            self.log.warning("Not verified: %s", line)
        if self.compare_whole:
            summary = write_comparison_report(
                self,
                context,
                [r.to_dict() for r in results],
                tables,
                live_results,
                "Do not cut over: run ferry_rollback, or find why the target diverged.",
                unverified,
            )
        else:
            _fail_on_differences(self, context, results)
        if unverified and self.no_person_after and self.is_dry_run(context):
            self.log.warning(
                "DRY RUN: a real run stops here, since not everything was verified and no person is asked before "
                "the cutover (thresholds.comparison_gate: auto)"
            )
        elif unverified and self.no_person_after:
            raise AirflowFailException(
                "the tables compared are equal, but not everything was verified ("
                + "; ".join(unverified)
                + "), and no person is asked before the cutover (thresholds.comparison_gate: auto). The freeze "
                "stops here with the subscription in place: run ferry_rollback, then D-day again comparing every "
                "table; or set thresholds.comparison_gate: person to decide at gate_comparison"
            )
        if not unverified and self.no_person_after:
            self.log.info("Every table verified equal: going on by itself (thresholds.comparison_gate: auto)")
        return summary if self.compare_whole else whole

    def check_fenced_tables_compared(self, context: Any, tables: list[str], scope: list[str]) -> None:
        """Fail when the source carries the fence on a table (or a partition of one) that ``list_tables`` did not
        know: created after it, so never published, copied or compared; its rows would stay behind. Before the
        drain, changing nothing."""
        fenced = set(self.source.get_fenced_tables())
        if not fenced or self.is_dry_run(context):
            return
        roots = {p["partition"]: p["root"] for p in self.source.get_partitions(self.plan.replication.schemas)}
        unknown = sorted({roots.get(t, t) for t in fenced} - set(scope) - set(tables))
        if unknown:
            raise AirflowFailException(
                f"fenced but never compared: {', '.join(unknown)} (created after list_tables, so not published, "
                "copied nor compared: its rows would stay on the old side). Do not cut over: run ferry_rollback, "
                "then D-day again (its scope step brings the table in)"
            )


def not_verified(plan: Plan, tables: list[str], scope: list[str]) -> list[str]:
    """What a narrowed comparison leaves unverified, one line each; empty when every table in scope was compared
    row by row."""
    lines = []
    left = [t for t in scope if t not in tables]
    if left:
        lines.append(
            f"{len(left)} table(s) in scope not compared (compare_mode 'tables' or the trigger form's tables): "
            + ", ".join(left)
        )
    if plan.thresholds.compare_mode == "counts":
        lines.append("compare_mode 'counts': missing and extra rows only, not the rows' contents")
    return lines


class ReplicationCompareTableOperator(FerryOperator):
    """Compare one whole table between source and target (in the freeze); fail on a difference.

    Mapped over what ReplicationCompareChangesOperator returns (the tables it could not verify by their
    changes), or over every table. The result goes to XCom (``comparison``) before the task ends, equal or
    not, for the report.

    :param table: the quoted, schema-qualified table name.
    :param changes_task_id: ReplicationCompareChangesOperator's task, for why this table is compared whole.
    """

    template_fields = ("table",)

    def __init__(self, *, table: str, changes_task_id: str | None = "compare_changes", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.changes_task_id = changes_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        thresholds = self.plan.thresholds
        mode = "counts" if thresholds.compare_mode == "counts" else "full"
        comparer = Comparer(self.source, self.target, concurrency=thresholds.compare_concurrency)
        because = (
            (context["ti"].xcom_pull(task_ids=self.changes_task_id, key="whole_because") or {}).get(self.table)
            if self.changes_task_id
            else None
        )
        started_at = datetime.now(UTC).isoformat()
        result = comparer.compare_table(self.table, mode)
        result.carried_whole, result.started_at = because or "", started_at
        _log_whole(self.log, result, because)
        context["ti"].xcom_push(key="comparison", value=result.to_dict())
        _fail_on_differences(self, context, [result])
        return result.to_dict()


class ReplicationCompareAllOperator(FerryOperator):
    """Compare every listed table whole in this one task, one after the other; fail on a difference.

    For a freeze where each mapped task's scheduling would cost more than its comparison (the way back after
    the cutover: the tables are compared while the application cannot write anywhere). The results go to XCom
    (``comparison``, a list) before the task ends, equal or not, for the report.

    :param list_task_id: ReplicationListTablesOperator's task.
    :param fix: what to do when a table differs (the end of the failure message).
    """

    def __init__(self, *, list_task_id: str = "list_tables", fix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.list_task_id, self.fix = list_task_id, fix

    def execute(self, context: Any) -> list[dict[str, Any]]:
        thresholds = self.plan.thresholds
        mode = "counts" if thresholds.compare_mode == "counts" else "full"
        comparer = Comparer(self.source, self.target, concurrency=thresholds.compare_concurrency)
        results = []
        for table in context["ti"].xcom_pull(task_ids=self.list_task_id) or []:
            started_at = datetime.now(UTC).isoformat()
            result = comparer.compare_table(table, mode)
            result.started_at = started_at
            self.log.info(
                "%s: %s; %d rows on the source, %d on the target, in %.2f s",
                table,
                "EQUAL" if result.equal else "DIFFERENT",
                result.rows_source,
                result.rows_target,
                result.seconds,
            )
            _log_result(self.log, result)
            results.append(result)
        context["ti"].xcom_push(key="comparison", value=[r.to_dict() for r in results])
        differing = [r.table for r in results if not r.equal]
        if differing and not self.is_dry_run(context):
            raise AirflowFailException(
                f"{', '.join(differing)} differ between source and target "
                f"({sum(r.differences for r in results)} difference(s) named in the log). {self.fix}"
            )
        return [r.to_dict() for r in results]


class ReplicationCompareReportOperator(FerryOperator):
    """Gather every table's comparison, write the report (log and Markdown file), fail when anything differs.

    :param list_task_id: the task id of ReplicationListTablesOperator (the tables that should be reported).
    :param compare_task_id: the task id of the mapped comparison task.
    :param changes_task_id: the task id of ReplicationCompareChangesOperator (None: there is none).
    :param live_task_id: the task id of the mapped live comparison (None: there is none).
    """

    def __init__(
        self,
        *,
        list_task_id: str,
        compare_task_id: str,
        changes_task_id: str | None = "compare_changes",
        live_task_id: str | None = "compare_live",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.list_task_id = list_task_id
        self.compare_task_id = compare_task_id
        self.changes_task_id = changes_task_id
        self.live_task_id = live_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        results = [
            r
            for task_id in (self.changes_task_id, self.compare_task_id)
            if task_id
            for r in pull_all(context, task_id, "comparison")
        ]
        live = pull_all(context, self.live_task_id, "live") if self.live_task_id else []
        expected = context["ti"].xcom_pull(task_ids=self.list_task_id) or []
        return write_comparison_report(self, context, results, expected, live)
