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
