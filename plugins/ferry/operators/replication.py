"""Operators of Postgres logical replication: schema copy, publication, subscription, write fence,
data comparison and sequences. Each forward step has a named inverse and writes the ledger.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, TriggerRule
from airflow.sdk.exceptions import AirflowFailException
from psycopg.conninfo import make_conninfo

from ferry.compare import Comparer
from ferry.hooks.replication import FenceBlocked
from ferry.ledger import latest
from ferry.operators.base import FerryOperator, pull_all
from ferry.operators.preflight import report_dir
from ferry.plan import Plan
from ferry.preflight import check_schema_drift, in_scope

PG_LIB = Path("/usr/lib/postgresql")


def scope_tables(plan: Plan, hook: Any) -> list[str]:
    """The quoted, schema-qualified names of the tables in scope on the server of ``hook``."""
    return [t["qualified"] for t in in_scope(plan, hook.get_tables(plan.replication.schemas))]


def pg_bin(program: str, server_version_num: int) -> Path:
    """The newest ``program`` of Debian's PostgreSQL installs, at least the server's major version."""
    chosen = os.environ.get("FERRY_PG_BIN")
    candidates = (
        [Path(chosen) / program]
        if chosen
        else sorted(PG_LIB.glob(f"*/bin/{program}"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    )
    for path in reversed(candidates):
        version = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True).stdout
        major = int(re.search(r"\(PostgreSQL\) (\d+)", version).group(1))
        if major >= server_version_num // 10000:
            return path
    raise AirflowFailException(
        f"no {program} of major version {server_version_num // 10000} or newer; install postgresql-client-"
        f"{server_version_num // 10000} (or set FERRY_PG_BIN to its bin folder)"
    )


def _libpq_env(conn_id: str, database: str) -> dict[str, str]:
    """libpq environment for a connection: the password travels in PGPASSWORD, never on a command line."""
    conn = BaseHook.get_connection(conn_id)
    return {
        "PGHOST": conn.host or "",
        "PGPORT": str(conn.port or 5432),
        "PGUSER": conn.login or "",
        "PGPASSWORD": conn.password or "",
        "PGDATABASE": database,
        "PGCONNECT_TIMEOUT": "10",
    }


class ReplicationCopySchemaOperator(FerryOperator):
    """Copy the source schema (tables, types, sequences, constraints, indexes, grants; no rows) to the target.

    Uses ``pg_dump --schema-only`` of at least the source's major version, restored in one transaction.
    Refuses when target tables in scope already hold rows unless ``replication.allow_target_rows``.
    A re-run when the target already matches the source changes nothing.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        drift = check_schema_drift(plan)
        ours = self.ledger.last("copy_schema", f"target:{plan.target.database}")
        if drift.status == "pass" and ours is not None:
            self.log.info("Ferry already copied the schema (%s) and it still matches; nothing to do", ours.at)
            return {"copied": False}
        occupied = [
            t
            for t in scope_tables(plan, self.target)
            if self.target.get_first(f"SELECT EXISTS (SELECT 1 FROM {t})")[0]  # noqa: S608 - quoted catalog names
        ]
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
        if self.would(
            context, "copy_schema", f"target:{plan.target.database}", None, {"schemas": plan.replication.schemas}
        ):
            return {"copied": False, "dry_run": True}
        version = self.source.get_replication_settings()["server_version_num"]
        schemas = [arg for s in plan.replication.schemas for arg in ("--schema", s)]
        dump = subprocess.run(
            [
                str(pg_bin("pg_dump", version)),
                "--schema-only",
                "--no-owner",
                "--no-publications",
                "--no-subscriptions",
                *schemas,
            ],
            env=os.environ | _libpq_env(plan.source.conn_id, plan.source.database),
            capture_output=True,
            text=True,
            check=False,
        )
        if dump.returncode:
            raise AirflowFailException(f"pg_dump of the source failed: {dump.stderr.strip()[-2000:]}")
        # A dump naming its schemas creates them; a fresh target already has "public".
        ddl = re.sub(r"^CREATE SCHEMA (\S+);$", r"CREATE SCHEMA IF NOT EXISTS \1;", dump.stdout, flags=re.MULTILINE)
        restore = subprocess.run(
            [str(pg_bin("psql", version)), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"],
            input=ddl,
            env=os.environ | _libpq_env(plan.target.conn_id, plan.target.database),
            capture_output=True,
            text=True,
            check=False,
        )
        if restore.returncode:
            raise AirflowFailException(
                f"restoring the schema on the target failed (nothing was applied): {restore.stderr.strip()[-2000:]}. "
                "A missing role means the application roles must be created on the target first."
            )
        tables = scope_tables(plan, self.target)
        digest = hashlib.sha256(dump.stdout.encode()).hexdigest()
        self.record(
            context, "copy_schema", f"target:{plan.target.database}", None, {"tables": tables, "ddl_sha256": digest}
        )
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
        target = f"target:{plan.target.database}"
        history = self.ledger.records()
        copied, dropped = latest(history, "copy_schema", target), latest(history, "drop_copied_schema", target)
        if copied is None or (dropped is not None and dropped.at > copied.at):
            self.log.info("Ferry copied no schema to the target, or dropped it already; nothing to do")
            return []
        if self.target.get_subscription_status(plan.subscription) is not None:
            raise AirflowFailException(
                f"subscription {plan.subscription} still feeds the target: drop_subscription must succeed "
                "first; then clear this task"
            )
        switched = switched_to_new_side(plan, history, since=copied.at)
        if switched is not None:
            raise AirflowFailException(
                f"D-day pointed {switched.target.removeprefix('dns:')} at the new side at {switched.at}: the target "
                "may hold writes the source never saw, so its tables stay. Drop them by hand once that is settled"
            )
        present = [
            row[0]
            for row in self.target.get_records(
                "SELECT t FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) WHERE to_regclass(t) IS NOT NULL ORDER BY n",
                parameters=(copied.after["tables"],),
            )
        ]
        if not present:
            self.log.info("None of the %d tables Ferry copied is on the target any more", len(copied.after["tables"]))
            return []
        if self.would(context, "drop_copied_schema", target, present, None):
            return []
        self.target.run(f"DROP TABLE {', '.join(present)} CASCADE")  # noqa: S608 - quoted catalog names from the ledger
        self.record(context, "drop_copied_schema", target, present, None)
        self.log.info("Dropped the %d tables Ferry copied to the target: %s", len(present), ", ".join(present))
        return present


def switched_to_new_side(plan: Plan, history: list[Any], since: str) -> Any | None:
    """The first ledger record after ``since`` pointing a record of the plan (other than the webhook
    host, which D-day routes to the recorder) at its new value; None when there is none."""
    new_values = (
        {
            f"dns:{r.name.rstrip('.')}.{r.type}": r.new_value.rstrip(".")
            for r in plan.dns.records
            if not (plan.webhooks and r.name == plan.webhooks.host)
        }
        if plan.dns
        else {}
    )
    for record in history:
        if record.at <= since or record.action not in ("switch_record", "weight_step"):
            continue
        key = record.target.rstrip(".")
        after = record.after or {}
        values = (
            {v["Value"].rstrip(".") for v in after.get("ResourceRecords", [])} if isinstance(after, dict) else set()
        )
        if key in new_values and (new_values[key] in values or record.action == "weight_step"):
            return record
    return None


class ReplicationCreatePublicationOperator(FerryOperator):
    """Create the publication of the tables in scope on the source. Inverse: ReplicationDropPublicationOperator."""

    def execute(self, context: Any) -> dict[str, Any]:
        tables = scope_tables(self.plan, self.source)
        if not tables:
            raise AirflowFailException("no table in scope on the source: check replication.schemas and tables")
        before = self.source.get_publication_tables(self.plan.publication)
        if before != sorted(tables) and self.would(
            context, "create_publication", f"source:{self.plan.publication}", before, tables
        ):
            return {"publication": self.plan.publication, "tables": len(tables), "done": "dry run"}
        done = self.source.create_publication(self.plan.publication, tables)
        self.log.info("Publication %s of %d tables: %s", self.plan.publication, len(tables), done)
        if done != "unchanged":
            self.record(context, "create_publication", f"source:{self.plan.publication}", before, tables)
        return {"publication": self.plan.publication, "tables": len(tables), "done": done}


class ReplicationDropPublicationOperator(FerryOperator):
    """Drop the publication on the source (inverse of ReplicationCreatePublicationOperator)."""

    def execute(self, context: Any) -> bool:
        before = self.source.get_publication_tables(self.plan.publication)
        if before is not None and self.would(context, "drop_publication", f"source:{self.plan.publication}", before):
            return False
        if self.source.drop_publication(self.plan.publication):
            self.record(context, "drop_publication", f"source:{self.plan.publication}", before, None)
            self.log.info("Dropped publication %s", self.plan.publication)
            return True
        self.log.info("Publication %s does not exist; nothing to do", self.plan.publication)
        return False


class ReplicationCreateSubscriptionOperator(FerryOperator):
    """Create the subscription on the target; it copies existing rows, then streams changes.

    Inverse: ReplicationDropSubscriptionOperator. The subscription's connection string (with its
    password) lives only in the target's catalog, never in logs, XComs or the ledger.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        publisher = BaseHook.get_connection(plan.replication.publisher_conn_id or plan.source.conn_id)
        if self.target.get_subscription_status(plan.subscription) is None and self.would(
            context, "create_subscription", f"target:{plan.subscription}", None, {"publication": plan.publication}
        ):
            return {"created": False, "dry_run": True}
        conninfo = make_conninfo(
            host=publisher.host,
            port=publisher.port or 5432,
            dbname=plan.source.database,
            user=publisher.login,
            password=publisher.password or None,
            application_name=plan.subscription,
        )
        if self.target.create_subscription(plan.subscription, plan.publication, conninfo):
            self.record(
                context,
                "create_subscription",
                f"target:{plan.subscription}",
                None,
                {"publication": plan.publication, "slot": plan.subscription, "publisher": publisher.host},
            )
            self.log.info("Created subscription %s to %s on %s", plan.subscription, plan.publication, publisher.host)
            return {"created": True}
        self.log.info("Subscription %s already exists; nothing to do", plan.subscription)
        return {"created": False}


class ReplicationRefreshSubscriptionOperator(FerryOperator):
    """Pick up tables added to the publication since the subscription was created (and copy their rows)."""

    def execute(self, context: Any) -> int:
        before = {f"{t['schema']}.{t['table']}" for t in self.target.get_subscription_tables(self.plan.subscription)}
        if self.would(context, "refresh_subscription", f"target:{self.plan.subscription}", sorted(before)):
            return 0
        self.target.refresh_subscription(self.plan.subscription)
        after = {f"{t['schema']}.{t['table']}" for t in self.target.get_subscription_tables(self.plan.subscription)}
        added = sorted(after - before)
        if added:
            self.record(
                context, "refresh_subscription", f"target:{self.plan.subscription}", sorted(before), sorted(after)
            )
        self.log.info("Subscription %s refreshed; %d table(s) added: %s", self.plan.subscription, len(added), added)
        return len(added)


class ReplicationDropSubscriptionOperator(FerryOperator):
    """Drop the subscription on the target, also when the source is unreachable.

    When it is, the slot is detached first and left on the source; the ledger records it as
    ``orphan_slot`` and ReplicationDropOrphanSlotOperator drops it once the source answers.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        try:
            self.source.fetch("ping")
            reachable = True
        except Exception as exc:  # noqa: BLE001 - any failure to reach the source means: detach the slot
            self.log.warning("The source does not answer (%s): detaching the slot before dropping", exc)
            reachable = False
        status = self.target.get_subscription_status(plan.subscription)
        if status is not None and self.would(context, "drop_subscription", f"target:{plan.subscription}", status):
            return {"dropped": False, "dry_run": True}
        if not self.target.drop_subscription(plan.subscription, publisher_reachable=reachable):
            self.log.info("Subscription %s does not exist; nothing to do", plan.subscription)
            return {"dropped": False}
        self.record(context, "drop_subscription", f"target:{plan.subscription}", status, None)
        if not reachable:
            self.record(context, "orphan_slot", f"source:{plan.subscription}", None, {"slot": plan.subscription})
        self.log.info("Dropped subscription %s%s", plan.subscription, "" if reachable else "; its slot awaits a drop")
        return {"dropped": True, "slot_left_on_source": not reachable}


class ReplicationDropOrphanSlotOperator(FerryOperator):
    """Drop a slot left on the source by a subscription dropped while the source was unreachable."""

    def execute(self, context: Any) -> bool:
        orphan = self.ledger.last("orphan_slot", f"source:{self.plan.subscription}")
        dropped = self.ledger.last("drop_orphan_slot", f"source:{self.plan.subscription}")
        if orphan is None or (dropped is not None and dropped.at > orphan.at):
            self.log.info("No slot awaits a drop")
            return False
        slot = orphan.after["slot"]
        if self.would(context, "drop_orphan_slot", f"source:{self.plan.subscription}", {"slot": slot}):
            return False
        if self.source.drop_slot(slot):
            self.log.info("Dropped slot %s on the source", slot)
        self.record(context, "drop_orphan_slot", f"source:{self.plan.subscription}", {"slot": slot}, None)
        return True


class ReplicationFenceSourceOperator(FerryOperator):
    """Fence the source against writes by the application roles; record the fence's WAL position.

    Afterwards no application role can INSERT, UPDATE, DELETE or TRUNCATE a table in scope,
    whatever its transaction mode, and its open sessions are ended; replication keeps streaming.
    Inverse: ReplicationUnfenceSourceOperator.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        roles = plan.source.app_roles
        if not roles:
            raise AirflowFailException("source.app_roles is empty: name the roles the application writes through")
        problems = self.source.check_fence_roles(roles, plan.replication.schemas)
        if problems:
            raise AirflowFailException("the fence cannot hold: " + "; ".join(problems))
        tables = scope_tables(plan, self.source)
        recorded = self.ledger.last("fence_source", f"source:{plan.source.database}")
        fenced = set(self.source.get_fenced_tables())
        if recorded and recorded.after and set(tables) <= fenced:
            self.log.info("The source is already fenced at %s; nothing to do", recorded.after["fence_lsn"])
            return {"fence_lsn": recorded.after["fence_lsn"], "tables": len(tables)}
        if self.would(
            context,
            "fence_source",
            f"source:{plan.source.database}",
            sorted(fenced),
            {"tables": tables, "roles": roles},
        ):
            return {"fence_lsn": None, "tables": len(tables), "dry_run": True}
        try:
            self.source.install_fence(tables, roles)
        except FenceBlocked as err:
            raise AirflowFailException(f"{err}; the application still writes to the source") from err
        missing = set(tables) - set(self.source.get_fenced_tables())
        if missing:
            raise AirflowFailException(f"fence not in place on {sorted(missing)}; run ferry_rollback to unfence")
        fence_lsn = self.source.get_current_lsn()
        slot = self.source.get_slot_status(plan.subscription)
        lag = None if slot is None else slot["lag_bytes"]
        self.record(
            context,
            "fence_source",
            f"source:{plan.source.database}",
            sorted(fenced),
            {"tables": tables, "roles": roles, "fence_lsn": fence_lsn, "lag_bytes_at_fence": lag},
        )
        self.log.info(
            "Source fenced at %s: %d tables refuse writes by %s; replication %s bytes behind at the fence",
            fence_lsn,
            len(tables),
            ", ".join(roles),
            lag,
        )
        return {"fence_lsn": fence_lsn, "tables": len(tables)}


class ReplicationUnfenceSourceOperator(FerryOperator):
    """Lift the write fence (inverse of ReplicationFenceSourceOperator): the source is writable again."""

    def execute(self, context: Any) -> list[str]:
        fenced = self.source.get_fenced_tables()
        if fenced and self.would(context, "unfence_source", f"source:{self.plan.source.database}", fenced, []):
            return []
        try:
            tables = self.source.remove_fence()
        except FenceBlocked as err:
            raise AirflowFailException(str(err)) from err
        if tables:
            self.record(context, "unfence_source", f"source:{self.plan.source.database}", tables, [])
            self.log.info("Fence lifted from %d tables", len(tables))
        else:
            self.log.info("The source is not fenced; nothing to do")
        return tables


class ReplicationListTablesOperator(FerryOperator):
    """The tables to compare, by the plan's ``compare_mode`` (or ``tables`` given here), one per mapped task.

    :param tables: names to compare instead of the plan's choice (``schema.table`` or ``table``).
    """

    template_fields = ("tables",)

    def __init__(self, *, tables: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = tables

    def execute(self, context: Any) -> list[str]:
        every = scope_tables(self.plan, self.source)
        chosen = (
            self.tables
            or self.param(context, "tables", None)
            or (self.plan.thresholds.compare_tables if self.plan.thresholds.compare_mode == "tables" else None)
        )
        if not chosen:
            return every
        unqualified = {
            t["table"]: t["qualified"]
            for t in in_scope(self.plan, self.source.get_tables(self.plan.replication.schemas))
        }
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
        lines = [
            "# Ferry data comparison",
            "",
            "| table | result | rows source | rows target | ranges | seconds |",
            "|---|---|---|---|---|---|",
        ]
        for r in sorted(results, key=lambda r: r["table"]):
            lines.append(
                f"| {r['table']} | {'EQUAL' if r['equal'] else 'DIFFERENT'} | {r['rows_source']} | {r['rows_target']} "
                f"| {r['chunks']} | {r['seconds']} |"
            )
        for r in results:
            if not r["equal"]:
                lines += ["", f"## {r['table']}: DIFFERENT", ""]
                lines += [f"- missing on the target: {k}" for k in r["missing_on_target"]]
                lines += [f"- only on the target: {k}" for k in r["extra_on_target"]]
                lines += [f"- changed: {k}" for k in r["changed"]]
                lines += [
                    f"- row hash {d['row_hash']}: {d['source']} on the source, {d['target']} on the target"
                    for d in r["differing_rows"]
                ]
        compared = {r["table"] for r in results}
        unreported = [t for t in expected if t not in compared]
        if unreported:
            lines += ["", f"Not compared (their task failed before a result): {', '.join(unreported)}"]
        markdown = "\n".join(lines) + "\n"
        path = (
            report_dir(self.plan)
            / "compare"
            / f"{context['dag'].dag_id}__{re.sub(r'[^A-Za-z0-9_.-]', '_', context['run_id'])}.md"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown)
        self.log.info("Comparison report written to %s\n%s", path, markdown)
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


class ReplicationSyncSequencesOperator(FerryOperator):
    """Set every sequence in scope on the target (owned or not, identity ones included) from the source.

    Each becomes the source's last value plus ``thresholds.sequence_gap``, never lower than the
    target's own value (so a re-run never moves one back). Then verifies that, on the target,
    every sequence-fed column's next value is above that column's maximum.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        schemas = plan.replication.schemas
        scope = {(t["schema"], t["table"]) for t in in_scope(plan, self.source.get_tables(schemas))}
        changed = []
        for seq in self.source.get_sequences(schemas):
            if seq["owner_table"] is not None and (seq["schema"], seq["owner_table"]) not in scope:
                continue
            name = seq["qualified"]
            source_value = self.source.get_sequence_value(name)
            target_value = self.target.get_sequence_value(name)
            wanted = max((source_value or 0) + plan.thresholds.sequence_gap, target_value or 0)
            if source_value is None and target_value is None:
                self.log.info("%s: never used on either side; left as it is", name)
                continue
            if target_value == wanted:
                self.log.info("%s: already at %d", name, wanted)
                continue
            if self.would(context, "set_sequence", f"target:{name}", target_value, wanted):
                continue
            self.target.set_sequence_value(name, wanted)
            changed.append(name)
            self.record(context, "set_sequence", f"target:{name}", target_value, wanted)
            self.log.info("%s: source %s, target %s -> %d", name, source_value, target_value, wanted)
        if self.is_dry_run(context):
            return {"changed": []}
        problems = []
        for col in self.target.get_sequence_columns(schemas):
            maximum = self.target.get_first(f"SELECT max({col['column']}) FROM {col['table']}")[0]  # noqa: S608
            current = self.target.get_sequence_value(col["sequence"])
            if maximum is not None and (current is None or current < maximum):
                problems.append(f"{col['table']}.{col['column']}: next value {(current or 0) + 1} <= max {maximum}")
        if problems:
            raise AirflowFailException("sequences behind their columns on the target: " + "; ".join(problems))
        self.log.info("%d sequence(s) set; every sequence-fed column's next value is above its maximum", len(changed))
        return {"changed": changed}
