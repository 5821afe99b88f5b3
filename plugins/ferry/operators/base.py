"""What every Ferry operator shares: the plan, its secrets, the ledger and the two databases."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from ferry.hooks.replication import ReplicationHook
from ferry.ledger import Ledger, LedgerRecord
from ferry.plan import Plan, load_runtime_plan
from ferry.redaction import plan_secrets


class FerryContext:
    """The plan, its secrets, the ledger and the two databases, made on first use inside ``execute``."""

    @cached_property
    def plan(self) -> Plan:
        return load_runtime_plan()

    @cached_property
    def secrets(self) -> list[str]:
        return plan_secrets(self.plan)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.plan, self.secrets)

    @cached_property
    def source(self) -> ReplicationHook:
        return ReplicationHook(
            self.plan.source.conn_id, self.plan.source.database, self.plan.thresholds.statement_timeout_s
        )

    @cached_property
    def target(self) -> ReplicationHook:
        return ReplicationHook(
            self.plan.target.conn_id, self.plan.target.database, self.plan.thresholds.statement_timeout_s
        )

    def record(self, context: Any, action: str, target: str, before: Any = None, after: Any = None) -> None:
        """Append what this task changed to the ledger (before returning, so a re-run sees it)."""
        key = self.ledger.append(
            LedgerRecord(
                stage=context["dag"].dag_id,
                task=self.task_id,
                action=action,
                target=target,
                before=before,
                after=after,
                try_number=context["ti"].try_number,
                run_id=context["run_id"],
            )
        )
        self.log.info("Ledger: %s %s recorded (%s)", action, target, key)


class FerryOperator(FerryContext, BaseOperator):
    """Base of Ferry's operators. Hooks and the plan are made in ``execute``, never at parse time."""

    # Without an __init__ of its own, a mapped subclass gets inlets=None from partial() (Airflow 3.3).
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
