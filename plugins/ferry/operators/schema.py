"""Operators of the target's schema: copy the source's (week prior), and its inverse."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ferry.checks.schema import schema_differences
from ferry.guards import confirmed, forward_link
from ferry.hooks.postgres import ClientProgramError
from ferry.ledger import Action, Target, latest, switched_to_new_side
from ferry.operators.base import FerryOperator
from ferry.schemas import Difference, in_carrying_order, relaxed


class ReplicationCopySchemaOperator(FerryOperator):
    """Copy the source schema (tables, types, sequences, constraints, indexes, grants; no rows) to the target.

    Uses ``pg_dump --schema-only`` of at least the source's major version, restored in one transaction.
    Refuses when target tables in scope already hold rows unless ``replication.allow_target_rows``.
    A re-run when the target already matches the source changes nothing. With ``in_window_only``
    (``ferry_schema_watch``), skipped outside the replication window and with ``replication.ddl: refuse``.
    """

    def __init__(self, *, in_window_only: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_window_only = in_window_only

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        target = Target.target(plan.target.database)
        if self.in_window_only and self.target.get_subscription_status(plan.subscription) is None:
            raise AirflowSkipException("not in the replication window")
        if self.in_window_only and plan.replication.ddl == "refuse":
            raise AirflowSkipException(
                "replication.ddl: refuse: carry_schema_changes names the tables added to the source; none is created"
            )
        found = schema_differences(plan)
        matches = found.shared and not found.other and not found.missing
        ours = self.ledger.last(Action.COPY_SCHEMA, target)
        if matches and ours is not None:
            self.log.info(
                "Ferry already copied the schema and it still matches (%d tables); nothing to do", found.shared
            )
            return {"copied": False}
        # Rows the subscription brought are expected; any other rows on the target are not.
        replicating = self.target.get_subscription_status(plan.subscription) is not None
        if not replicating:
            occupied = [t for t in self.scope_tables(self.target) if self.target.has_rows(t)]
            if occupied and not plan.replication.allow_target_rows:
                raise AirflowFailException(
                    f"target tables already hold rows: {', '.join(occupied)}. Replicating into them would mix rows; "
                    "empty them, or set replication.allow_target_rows: true in the plan if that is intended"
                )
        if found.other and replicating:
            # During the replication window the target's tables follow the source's migrations by
            # ferry_schema_watch; the tables added since are this step's.
            self.log.warning(
                "Tables both sides have differ (ferry_schema_watch carries them; not this step's): %s",
                "; ".join(d.finding() for d in found.fixes[:20]),
            )
            if not found.missing:
                self.log.info("No table in scope is missing on the target; nothing to copy")
                return {"copied": False}
        elif found.other and found.shared:
            raise AirflowFailException(
                "The target already has part of the schema, and it differs from the source: "
                + "; ".join(d.finding() for d in found.fixes[:20])
                + ". Run those statements on the target, or drop those objects there (it must hold no rows yet) "
                "and run this again."
            )
        if matches:
            self.log.info("The target already has the source's schema (%d tables); nothing to do", found.shared)
            return {"copied": False}
        # The whole schema, or (the tables in scope added to the source since) only the tables the target lacks.
        tables = found.missing if found.shared else None
        wanted = {"schemas": plan.replication.schemas, "tables": tables or "all"}
        if self.would(context, Action.COPY_SCHEMA, target, None, wanted):
            return {"copied": False, "dry_run": True}
        version = self.source.server_version_num()
        try:
            dump = self.source.dump_schema(plan.replication.schemas, tables)
        except ClientProgramError as err:
            raise AirflowFailException(f"pg_dump of the source failed: {err}") from err
        # A dump naming its schemas creates them; a fresh target already has "public".
        ddl = re.sub(r"^CREATE SCHEMA (\S+);$", r"CREATE SCHEMA IF NOT EXISTS \1;", dump, flags=re.MULTILINE)
        # pg_dump of named schemas leaves out their extensions; the tables' types may come from them.
        ddl = self.source.extensions_ddl(plan.replication.schemas) + ddl
        digest = hashlib.sha256(dump.encode()).hexdigest()
        expected = {"tables": tables or self.scope_tables(self.source), "ddl_sha256": digest}
        with self.changing(context, Action.COPY_SCHEMA, target, None, expected) as change:
            try:
                self.target.restore_schema(ddl, version)
            except ClientProgramError as err:
                raise AirflowFailException(
                    f"restoring the schema on the target failed (nothing was applied): {err}. "
                    "A missing role means the application roles must be created on the target first."
                ) from err
            copied = tables or self.scope_tables(self.target)
            change.after = {"tables": copied, "ddl_sha256": digest}
        self.log.info(
            "Copied the schema of %d table(s) to the target%s (DDL sha256 %s)",
            len(copied),
            f" (added to the source since: {', '.join(copied)})" if tables else "",
            digest[:12],
        )
        return {"copied": True, "tables": len(copied)}


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
        dropped = latest(history, Action.DROP_COPIED_SCHEMA, target)
        since = dropped.at if dropped is not None and dropped.done else ""
        copies = [r for r in history if r.action == Action.COPY_SCHEMA and r.target == target and r.at > since]
        if not copies:
            self.log.info("Ferry copied no schema to the target since it last dropped it; nothing to do")
            return []
        copied = copies[0]
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
        tables = list(dict.fromkeys(t for r in copies for t in r.after["tables"]))
        present = self.target.present_tables(tables)
        if not present:
            self.log.info("None of the %d tables Ferry copied is on the target any more", len(tables))
            return []
        if self.would(context, Action.DROP_COPIED_SCHEMA, target, present, None):
            return []
        with self.changing(context, Action.DROP_COPIED_SCHEMA, target, present, None):
            self.target.drop_tables(present)
        self.log.info("Dropped the %d tables Ferry copied to the target: %s", len(present), ", ".join(present))
        return present


class ReplicationCarrySchemaOperator(FerryOperator):
    """Carry the source's schema changes to the target while the forward replication runs (``ferry_schema_watch``):
    logical replication carries rows, not DDL, and a column, a renamed column or a partition the target lacks stops
    the subscription's apply at the first row that needs it.

    Reads both schemas (:mod:`ferry.schemas`); with ``replication.ddl: carry`` runs each difference's statements on
    the target, in the order the apply needs them (extensions and functions, partitions and new columns first; what
    the source dropped last), each recorded in the ledger first (target side only: nothing to undo on the source).
    Without a statement timeout (an index built concurrently, a column widened, may take long) and with a 10 s lock
    timeout (the apply worker holds its locks briefly: a failed attempt is retried at the next run).

    A renamed or dropped column waits for the apply: the rows written on the source before the change still carry
    the old column, and the target must keep it until they are applied. A rename is carried once the apply has
    passed the source's position when the catalogs were read, or has stopped twice at the same row (the first that
    needs the new name); a dropped column once the apply has passed that position (meanwhile the target's column is
    made nullable if the source's new rows would fail on it). Either is left for the next run after 45 s.

    What it does not carry by itself (a type change that is not a widening) is named with its statement and fails
    the run; tables added to the source are the next steps' (``copy_schema`` of ``ferry_schema_watch``). With
    ``refuse``, any difference fails it, naming each, changing nothing. Outside the replication window (no forward
    subscription) it is skipped.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        if self.target.get_subscription_status(plan.subscription) is None:
            self.log.info(
                "No forward replication (%s) on the target: before ferry_week_prior or after the cutover, nothing to "
                "watch",
                plan.subscription,
            )
            raise AirflowSkipException("not in the replication window")
        found = schema_differences(plan)
        if found.missing and plan.replication.ddl == "refuse":
            raise AirflowFailException(
                "tables in scope were added to the source during the replication window and the plan refuses schema "
                f"changes (replication.ddl: refuse): {', '.join(found.missing)}. Drop them on the source, or take "
                "them out of the plan's scope (replication.exclude_tables), or set replication.ddl: carry"
            )
        if found.missing:
            self.log.info(
                "Tables in scope added to the source since the schema copy (the next steps create them on the "
                "target, publish and subscribe them, copying their rows): %s",
                ", ".join(found.missing),
            )
        if not found.fixes:
            self.log.info("The schemas of the %d tables in scope both sides have are equal", found.shared)
            return {"watching": True, "carried": []}
        if plan.replication.ddl == "refuse":
            raise AirflowFailException(
                f"the source's schema changed during the replication window and the plan refuses schema changes "
                f"(replication.ddl: refuse): {'; '.join(d.finding() for d in found.fixes)}. Undo the migration on the "
                "source, or run those statements on the target yourself, or set replication.ddl: carry"
            )
        # Every row written before what the source's catalogs showed is before this position.
        observed = self.source.get_current_lsn()
        ordered = in_carrying_order(found.fixes)
        left = [d for d in ordered if d.unsafe]
        # A renamed or dropped column: the rows the apply has not reached yet still carry the old column. Until it
        # has applied them the target keeps it (only made nullable when the source's new rows lack it).
        gated = [d for d in ordered if not d.unsafe and d.kind in ("rename", "drop column")]
        ready = [d for d in ordered if not d.unsafe and d not in gated]
        ready += [relaxed(d) for d in gated if d.kind == "drop column" and d.stops_apply]
        carried = [d.what for d in ready if self._carry(context, d)]
        deferred: list[Difference] = []
        if gated and not self.is_dry_run(context):
            link = forward_link(plan, self.source, self.target)
            renames = [d for d in gated if d.kind == "rename"]
            drops = [d for d in gated if d.kind == "drop column"]
            # A rename may go once the apply stopped at the first row that needs the new name (no other cause left
            # to stop it), a drop only once every row written before it was applied.
            if renames and self._settle(link, observed, stop_counts=not left) != "behind":
                carried += [d.what for d in renames if self._carry(context, d)]
            else:
                deferred += renames
            if drops and self._settle(link, observed, stop_counts=False) == "reached":
                carried += [d.what for d in drops if self._carry(context, d)]
            else:
                deferred += drops
            for difference in deferred:
                self.log.info(
                    "Left for the next run: %s. The subscription has not yet applied every row the source wrote "
                    "before that change (they still hold the old column)",
                    difference.what,
                )
        if self.is_dry_run(context):
            return {"watching": True, "carried": [], "dry_run": True}
        waiting = {d.fix for d in deferred}
        still = [d for d in schema_differences(plan).fixes if d.fix not in waiting]
        if left or still:
            raise AirflowFailException(
                f"carried {len(carried)} schema change(s) to the target; not carried: "
                + "; ".join(f"{d.finding()} ({d.unsafe})" if d.unsafe else d.finding() for d in (left or still))
                + ". Run each statement on the target once it is safe for your data (the subscription's apply waits "
                "meanwhile if its rows need it), then this DAG again"
            )
        if deferred:
            self.log.info("%d change(s) carried; %d left for the next run", len(carried), len(deferred))
            return {"watching": True, "carried": carried, "deferred": [d.what for d in deferred]}
        self.log.info("The target's schema matches the source's again: %d change(s) carried", len(carried))
        return {"watching": True, "carried": carried}

    def _carry(self, context: Any, difference: Difference) -> bool:
        """Run one difference's statements on the target, in the ledger first; False in a dry run."""
        target = Target.target(f"{self.plan.target.database}/schema/{difference.table}")
        if self.would(context, Action.CARRY_SCHEMA_CHANGE, target, difference.what, difference.fix):
            return False
        with self.changing(context, Action.CARRY_SCHEMA_CHANGE, target, difference.what, difference.fix):
            with self.target.session() as conn:
                conn.execute("SET statement_timeout = 0")
                conn.execute("SET lock_timeout = '10s'")
                for statement in difference.statements:
                    conn.execute(statement)
        self.log.info("Carried to the target: %s (%s)", difference.what, difference.fix)
        if difference.warning:
            self.log.warning("Beware: %s", difference.warning)
        return True

    def _settle(self, link: Any, lsn: str, stop_counts: bool, timeout_s: float = 45) -> str:
        """Wait for the apply to go as far as it can: ``reached`` once the subscriber confirmed ``lsn``;
        ``stopped`` (with ``stop_counts``) once it failed twice on the same row, its confirmed position unmoved
        between the failures (it stopped at a row that needs what is still to carry); else ``behind``."""
        started = time.monotonic()
        errors = self._apply_errors()
        mark: tuple[int, str] | None = None
        while time.monotonic() - started < timeout_s:
            slot = confirmed(link, lsn)
            if slot is None:
                return "behind"
            if slot["caught_up"]:
                self.log.info("The apply passed the source's changes after %.1f s", time.monotonic() - started)
                return "reached"
            now = self._apply_errors()
            if stop_counts and now > errors:
                if mark is None or slot["confirmed_flush_lsn"] != mark[1]:
                    mark = (now, slot["confirmed_flush_lsn"])
                elif now > mark[0]:
                    self.log.info(
                        "The apply stops at a row that needs the change (after %.1f s, at %s)",
                        time.monotonic() - started,
                        mark[1],
                    )
                    return "stopped"
            time.sleep(0.5)
        return "behind"

    def _apply_errors(self) -> int:
        status = self.target.get_subscription_status(self.plan.subscription)
        return 0 if status is None else status["apply_error_count"]
