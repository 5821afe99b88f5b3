"""Stage bookkeeping: a stage records its completion in the ledger; the next one refuses to start without it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry import report
from ferry.ledger import Action, Target
from ferry.operators.base import STEPS_KEY, FerryOperator, pull_all
from ferry.operators.webhooks import destination_url


class FerryMarkStageCompleteOperator(FerryOperator):
    """Record in the ledger that this stage ran to the end (the next stage checks for it)."""

    def execute(self, context: Any) -> str:
        stage = context["dag"].dag_id
        earlier = self.ledger.last(Action.STAGE_COMPLETE, Target.stage(stage))
        if earlier is not None and earlier.done:
            self.log.info("Stage %s had already completed (%s); its run again changed nothing new", stage, earlier.at)
            return stage
        if self.would(context, Action.STAGE_COMPLETE, Target.stage(stage)):
            return stage
        self.record(context, Action.STAGE_COMPLETE, Target.stage(stage), None, {"run_id": context["run_id"]})
        self.log.info("Stage %s complete", stage)
        return stage


class FerryCheckStageCompleteOperator(FerryOperator):
    """Refuse to go on unless the ledger says ``stage`` completed.

    :param stage: the DAG id of the stage that must have completed.
    """

    def __init__(self, *, stage: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage

    def execute(self, context: Any) -> str:
        done = self.ledger.last(Action.STAGE_COMPLETE, Target.stage(self.stage))
        if done is not None and not done.done:
            done = None
        if done is None and self.is_dry_run(context):
            self.log.warning("DRY RUN: %s has not completed; a real run would refuse to start here", self.stage)
            return ""
        if done is None:
            raise AirflowFailException(
                f"{self.stage} has not completed (no record in the ledger under {self.plan.ledger_prefix}); "
                f"run it to the end first, then trigger this stage again"
            )
        self.log.info("%s completed at %s (run %s)", self.stage, done.at, done.after["run_id"])
        return done.at


class RollbackResultOperator(FerryOperator):
    """Keep a rollback with a failed step failed, naming the steps that did not complete."""

    def execute(self, context: Any) -> None:
        ti = context["ti"]
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])[ti.run_id]
        failed = sorted(
            t for t, state in states.items() if state in ("failed", "upstream_failed") and t != self.task_id
        )
        if failed:
            raise AirflowFailException(
                f"rollback steps did not complete: {', '.join(failed)}; read their logs, fix, re-run"
            )
        self.log.info("Rollback complete: the old side serves again")


class FerrySmokeTestOperator(FerryOperator):
    """Check the new application answers (``GET <replay destination>/healthz`` is 2xx) before the point of no return.

    :param path: the path to request.
    """

    def __init__(self, *, path: str = "/healthz", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    def execute(self, context: Any) -> int:
        import httpx

        base = destination_url(self.plan, "new")
        response = httpx.get(base.rstrip("/") + self.path, timeout=10)
        if response.status_code >= 300 and self.is_dry_run(context):
            self.log.warning(
                "DRY RUN: the new application answers %s on %s: a dry run does not scale its deployments up "
                "(restore_deployments), so it may not serve yet; a real run stops here unless it answers 2xx",
                response.status_code,
                self.path,
            )
            return response.status_code
        if response.status_code >= 300:
            raise AirflowFailException(
                f"the new application answers {response.status_code} on {self.path}; do not cut over"
            )
        self.log.info("The new application answers %s on %s", response.status_code, self.path)
        return response.status_code


class FerryWriteReportOperator(FerryOperator):
    """Write the D-day report: Markdown, the same data as JSON, and a timeline chart (PNG), locally and in S3.

    From the ledger (this run's changes, the freeze window, the lag at the fence) and from XCom
    (each task's start and end, the comparison per table, the catch-up wait; on a dry run, what
    each task would have changed).

    :param compare_task_id: the mapped comparison task (whole tables), for per-table results; None when the
        changes' comparison compares whole tables itself.
    :param changes_task_id: the freeze's comparison of the captured changes, for per-table results.
    :param live_task_id: the mapped live comparison task (what was verified before the fence).
    :param caught_up_task_id: the catch-up sensor, for how long the target took to confirm the fence.
    """

    def __init__(
        self,
        *,
        compare_task_id: str | None = None,
        changes_task_id: str = "compare_changes",
        live_task_id: str = "compare_live",
        caught_up_task_id: str = "fence_source_and_catch_up",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.compare_task_id = compare_task_id
        self.changes_task_id = changes_task_id
        self.live_task_id = live_task_id
        self.caught_up_task_id = caught_up_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        run_id, dry = context["run_id"], self.is_dry_run(context)
        records = [r for r in self.ledger.records() if r.run_id == run_id]
        fence = next((r for r in records if r.action == Action.FENCE_SOURCE), None)
        seconds, freeze_start, freeze_end = report.freeze_window(records)
        started = context["ti"].xcom_pull(task_ids=self.task_id, key="started", map_indexes=-1)
        rows = report.timeline(
            [
                t
                for task in context["dag"].task_ids
                for key in ("timing", STEPS_KEY)
                for t in pull_all(context, task, key)
            ]
        )
        caught_up = context["ti"].xcom_pull(task_ids=self.caught_up_task_id) or {}
        comparisons = [
            c
            for task_id in (self.changes_task_id, self.compare_task_id)
            if task_id
            for c in pull_all(context, task_id, "comparison")
        ]
        live = pull_all(context, self.live_task_id, "live")
        data = {
            "plan": self.plan.name,
            "run_id": run_id,
            "dry_run": dry,
            "dday_s": None,
            "freeze_window_s": seconds,
            "freeze_start": freeze_start,
            "freeze_end": freeze_end,
            "fence_lsn": fence.after["fence_lsn"] if fence and fence.done else None,
            "replication_lag_at_fence": {
                "bytes": fence.after.get("lag_bytes_at_fence") if fence and fence.done else None,
                "caught_up_after_s": caught_up.get("waited_s"),
            },
            "timeline": rows,
            "comparison": report.verification(comparisons, live),
            "sequences_set": sum(len(r.after) for r in records if r.action == Action.SET_SEQUENCE),
            "materialized_views": [r.target.name for r in records if r.action == Action.REFRESH_MATVIEW],
            "large_objects_copied": sum(
                len(r.after["oids"]) for r in records if r.action == Action.COPY_LARGE_OBJECTS and r.done
            ),
            "read_replicas": [r.target for r in records if r.action == Action.CREATE_READ_REPLICA],
            "dns_changes": [{"record": r.target, "to": r.after} for r in records if r.action == Action.SWITCH_RECORD],
            "webhooks": next((r.after for r in records if r.action == Action.REPLAY_WEBHOOKS), None),
            "reverse_replication": next(
                (r.target.name for r in records if r.action == Action.CREATE_REVERSE_SUBSCRIPTION and r.done),
                None,
            ),
            "users": report.users_view(self.plan, records),
            "would_change": [w for task in context["dag"].task_ids for w in pull_all(context, task, "would_change")],
            "chart": None,
            "ledger": [{"at": r.at, "task": r.task, "action": r.action, "target": r.target} for r in records],
        }
        # This task's own row: from its start to now, drawing and writing included as far as can be known.
        now = datetime.now(UTC).isoformat()
        rows.append(report.timeline([{"task": self.task_id, "start": started or now, "end": now}])[0])
        data["dday_s"] = round(
            (datetime.fromisoformat(now) - datetime.fromisoformat(rows[0]["start"])).total_seconds(), 3
        )
        stem = report.stem("d_day", run_id)
        data["chart"] = f"{stem}.png"
        title = f"Ferry D-day {self.plan.name}{' (dry run)' if dry else ''}: {run_id}"
        png = report.draw_timeline(rows, (freeze_start, freeze_end), title)
        path = report.write(
            self.plan, "d_day", context, report.render_d_day(data), data, name="d_day", files={".png": png}, upload=True
        )
        return {"report_path": str(path), "freeze_window_s": seconds, "dday_s": data["dday_s"]}
