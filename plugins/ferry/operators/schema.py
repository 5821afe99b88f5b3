"""Operators of the target's schema: copy the source's (week prior), and its inverse."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ferry.hooks.postgres import ClientProgramError
from ferry.ledger import Action, Target, latest, switched_to_new_side
from ferry.operators.base import FerryOperator
from ferry.preflight import check_schema_drift


class ReplicationCopySchemaOperator(FerryOperator):
    """Copy the source schema (tables, types, sequences, constraints, indexes, grants; no rows) to the target.

    Uses ``pg_dump --schema-only`` of at least the source's major version, restored in one transaction.
    Refuses when target tables in scope already hold rows unless ``replication.allow_target_rows``.
    A re-run when the target already matches the source changes nothing.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        target = Target.target(plan.target.database)
        drift = check_schema_drift(plan)
        ours = self.ledger.last(Action.COPY_SCHEMA, target)
        if drift.status == "pass" and ours is not None:
            self.log.info("Ferry already copied the schema (%s) and it still matches; nothing to do", ours.at)
            return {"copied": False}
        occupied = [t for t in self.scope_tables(self.target) if self.target.has_rows(t)]
        if occupied and not plan.replication.allow_target_rows:
            raise AirflowFailException(
                f"target tables already hold rows: {', '.join(occupied)}. Replicating into them would mix rows; "
                "empty them, or set replication.allow_target_rows: true in the plan if that is intended"
            )
        if drift.status == "pass":
            self.log.info("The target already has the source's schema: %s; nothing to do", drift.summary)
            return {"copied": False}
        if drift.status == "fail":
            raise AirflowFailException(
                "The target already has part of the schema, and it differs from the source: "
                + "; ".join(drift.findings[:20])
                + ". Drop those objects on the target (it must hold no rows yet) or apply the missing migrations."
            )
        if self.would(context, Action.COPY_SCHEMA, target, None, {"schemas": plan.replication.schemas}):
            return {"copied": False, "dry_run": True}
        version = self.source.server_version_num()
        try:
            dump = self.source.dump_schema(plan.replication.schemas)
        except ClientProgramError as err:
            raise AirflowFailException(f"pg_dump of the source failed: {err}") from err
        # A dump naming its schemas creates them; a fresh target already has "public".
        ddl = re.sub(r"^CREATE SCHEMA (\S+);$", r"CREATE SCHEMA IF NOT EXISTS \1;", dump, flags=re.MULTILINE)
        digest = hashlib.sha256(dump.encode()).hexdigest()
        expected = {"tables": self.scope_tables(self.source), "ddl_sha256": digest}
        with self.changing(context, Action.COPY_SCHEMA, target, None, expected) as change:
            try:
                self.target.restore_schema(ddl, version)
            except ClientProgramError as err:
                raise AirflowFailException(
                    f"restoring the schema on the target failed (nothing was applied): {err}. "
                    "A missing role means the application roles must be created on the target first."
                ) from err
            tables = self.scope_tables(self.target)
            change.after = {"tables": tables, "ddl_sha256": digest}
        self.log.info("Copied the schema of %d tables to the target (DDL sha256 %s)", len(tables), digest[:12])
        return {"copied": True, "tables": len(tables)}


class ReplicationDropCopiedSchemaOperator(FerryOperator):
    """Drop the tables ``copy_schema`` created on the target, and the sequences they own.

    Inverse of ReplicationCopySchemaOperator, for abandoning the target (``ferry_rollback`` with
    undo_all_stages). Their rows are replicated copies of the source's, which keeps every row. Only
    the tables the ledger says Ferry copied; refused while a subscription still feeds the target, and
    refused once D-day has switched the application's DNS to the new side (the target may then hold
    writes the source never saw).
    """

    def execute(self, context: Any) -> list[str]:
        plan = self.plan
        target = Target.target(plan.target.database)
        history = self.ledger.records()
        copied = latest(history, Action.COPY_SCHEMA, target)
        dropped = latest(history, Action.DROP_COPIED_SCHEMA, target)
        if copied is None:
            self.log.info("Ferry copied no schema to the target; nothing to do")
            return []
        if dropped is not None and dropped.done and dropped.at > copied.at:
            self.log.info("Ferry dropped the tables it copied already (%s); nothing to do", dropped.finished_at)
            return []
        if self.target.get_subscription_status(plan.subscription) is not None:
            raise AirflowFailException(
                f"subscription {plan.subscription} still feeds the target: drop_subscription must succeed "
                "first; then clear this task"
            )
        switched = switched_to_new_side(plan, history, since=copied.at)
        if switched is not None:
            raise AirflowFailException(
                f"D-day pointed {switched.target.name} at the new side at {switched.at}: the target "
                "may hold writes the source never saw, so its tables stay. Drop them by hand once that is settled"
            )
        present = self.target.present_tables(copied.after["tables"])
        if not present:
            self.log.info("None of the %d tables Ferry copied is on the target any more", len(copied.after["tables"]))
            return []
        if self.would(context, Action.DROP_COPIED_SCHEMA, target, present, None):
            return []
        with self.changing(context, Action.DROP_COPIED_SCHEMA, target, present, None):
            self.target.drop_tables(present)
        self.log.info("Dropped the %d tables Ferry copied to the target: %s", len(present), ", ".join(present))
        return present
