"""Stage bookkeeping: a stage records its completion in the ledger; the next one refuses to start without it."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.operators.base import FerryOperator


class FerryMarkStageCompleteOperator(FerryOperator):
    """Record in the ledger that this stage ran to the end (the next stage checks for it)."""

    def execute(self, context: Any) -> str:
        stage = context["dag"].dag_id
        earlier = self.ledger.last("stage_complete", f"stage:{stage}")
        if earlier is not None:
            self.log.info("Stage %s had already completed (%s); its run again changed nothing new", stage, earlier.at)
            return stage
        self.record(context, "stage_complete", f"stage:{stage}", None, {"run_id": context["run_id"]})
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
        done = self.ledger.last("stage_complete", f"stage:{self.stage}")
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

        from ferry.operators.webhooks import destination_url

        base = destination_url(self.plan, "new")
        response = httpx.get(base.rstrip("/") + self.path, timeout=10)
        if response.status_code >= 300:
            raise AirflowFailException(
                f"the new application answers {response.status_code} on {self.path}; do not cut over"
            )
        self.log.info("The new application answers %s on %s", response.status_code, self.path)
        return response.status_code


class FerryWriteReportOperator(FerryOperator):
    """Write the migration report (Markdown and the same data as JSON, locally and in S3) from the ledger.

    :param compare_task_id: the mapped comparison task, for per-table results.
    """

    def __init__(self, *, compare_task_id: str = "compare_data", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.compare_task_id = compare_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        import json
        import re
        from datetime import datetime

        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from ferry.operators.preflight import report_dir

        run_id = context["run_id"]
        records = [r for r in self.ledger.records() if r.run_id == run_id]
        at = {r.action: datetime.fromisoformat(r.at) for r in records}
        fence = next((r for r in records if r.action == "fence_source"), None)
        writable = max(
            (datetime.fromisoformat(r.at) for r in records if r.action in ("drop_subscription", "set_sequence")),
            default=None,
        )
        comparisons = [c for c in context["ti"].xcom_pull(task_ids=self.compare_task_id, key="comparison") or [] if c]
        data = {
            "plan": self.plan.name,
            "run_id": run_id,
            "freeze_window_s": round((writable - at["fence_source"]).total_seconds(), 3)
            if fence and writable
            else None,
            "fence_lsn": fence.after["fence_lsn"] if fence else None,
            "comparison": [
                {k: c[k] for k in ("table", "equal", "rows_source", "rows_target", "seconds")} for c in comparisons
            ],
            "sequences_set": sum(r.action == "set_sequence" for r in records),
            "read_replicas": [r.target for r in records if r.action == "create_read_replica"],
            "dns_changes": [{"record": r.target, "to": r.after} for r in records if r.action == "switch_record"],
            "webhooks": next((r.after for r in records if r.action == "replay_webhooks"), None),
            "ledger": [{"at": r.at, "task": r.task, "action": r.action, "target": r.target} for r in records],
        }
        lines = [
            f"# Ferry D-day report: {self.plan.name}",
            "",
            f"- run: `{run_id}`",
            f"- write freeze (fence to target writable): {data['freeze_window_s']} s",
            f"- fence LSN: {data['fence_lsn']}",
            f"- sequences set: {data['sequences_set']}",
            f"- read replicas: {', '.join(data['read_replicas']) or 'none new'}",
            f"- webhooks: {data['webhooks']}",
            "",
            "| table | equal | rows source | rows target | seconds |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['table']} | {c['equal']} | {c['rows_source']} | {c['rows_target']} | {c['seconds']} |"
            for c in data["comparison"]
        ]
        lines += ["", "## Changes, in order", ""] + [
            f"- {e['at']} {e['task']}: {e['action']} {e['target']}" for e in data["ledger"]
        ]
        markdown = "\n".join(lines) + "\n"
        stem = f"d_day__{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}"
        folder = report_dir(self.plan) / "d_day"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.md").write_text(markdown)
        (folder / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str))
        s3 = S3Hook(aws_conn_id=self.plan.aws.conn_id)
        for suffix, body in ((".md", markdown), (".json", json.dumps(data, default=str))):
            s3.load_string(
                body,
                key=f"{self.plan.ledger_prefix}/reports/{stem}{suffix}",
                bucket_name=self.plan.ledger.bucket,
                replace=True,
            )
        self.log.info("D-day report written to %s\n%s", folder / f"{stem}.md", markdown)
        return {"report_path": str(folder / f"{stem}.md"), "freeze_window_s": data["freeze_window_s"]}
