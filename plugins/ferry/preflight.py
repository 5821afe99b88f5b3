"""Pre-flight checks: read everything, change nothing, and say what to do about each problem.

Each check is a function of the plan that returns a :class:`CheckResult`. ``fail`` blocks the
migration (NO-GO); ``warn`` is reported but does not block; ``skip`` means not applicable yet.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, Literal

from airflow.sdk import BaseHook

from ferry.hooks.replication import ReplicationHook, fence_allowed_roles, fence_problems, fenced_tables
from ferry.plan import Plan, in_scope

Status = Literal["pass", "warn", "fail", "skip"]


@dataclasses.dataclass
class CheckResult:
    """What one check found."""

    check: str
    status: Status
    summary: str
    findings: list[str] = dataclasses.field(default_factory=list)
    remedy: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(**data)


def _source(plan: Plan) -> ReplicationHook:
    return ReplicationHook.for_side(plan, "source")


def _target(plan: Plan) -> ReplicationHook:
    return ReplicationHook.for_side(plan, "target")


def _ping(kind: str, conn_id: str, plan: Plan) -> str:
    """Reach one system and say what answered; raise on failure."""
    if kind == "postgres":
        database = plan.source.database if conn_id == plan.source.conn_id else plan.target.database
        row = ReplicationHook(conn_id, database, plan.thresholds.statement_timeout_s).fetch("ping")[0]
        return f"PostgreSQL {row['version']}, database {row['database']} as {row['user']}"
    if kind == "aws":
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        identity = AwsBaseHook(aws_conn_id=conn_id, client_type="sts").conn.get_caller_identity()
        return f"AWS account {identity['Account']}"
    if kind == "s3":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        buckets = S3Hook(aws_conn_id=conn_id).get_conn().list_buckets()["Buckets"]
        return f"S3-compatible storage, {len(buckets)} buckets"
    if kind == "http":
        import httpx

        conn = BaseHook.get_connection(conn_id)
        response = httpx.get(f"{conn.schema or 'http'}://{conn.host}:{conn.port or 80}/", timeout=10)
        return f"HTTP {response.status_code} from {conn.host}"
    if kind == "ssh":
        from ferry.hooks.vms import VmHook

        return f"SSH to {VmHook(conn_id).run('uname -n', timeout=30)[1]} (host key verified)"
    if kind == "kubernetes":
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        namespace = plan.kubernetes.namespace if plan.kubernetes else "default"
        KubernetesHook(conn_id=conn_id).core_v1_client.read_namespace(namespace)
        return f"Kubernetes namespace {namespace}"
    raise ValueError(f"no connectivity check for {kind}")


def check_connections(plan: Plan) -> CheckResult:
    """Every connection the plan names answers."""
    findings, failed = [], []
    for conn_id, kind in plan.connections().items():
        try:
            findings.append(f"{conn_id} ({kind}): {_ping(kind, conn_id, plan)}")
        except Exception as exc:  # noqa: BLE001 - every failure is a finding, whatever its type
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            findings.append(f"{conn_id} ({kind}): UNREACHABLE: {reason}")
            failed.append(conn_id)
    if failed:
        return CheckResult(
            "connections",
            "fail",
            f"{len(failed)} of {len(findings)} connections do not answer: {', '.join(failed)}",
            findings,
            "Check each connection's host, port, credentials and network path in Admin > Connections "
            "(or its AIRFLOW_CONN_<ID> variable), then run ferry_preflight again.",
        )
    return CheckResult("connections", "pass", f"all {len(findings)} connections answer", findings)


def check_source_replication_settings(plan: Plan) -> CheckResult:
    """The source can publish: ``wal_level=logical`` and free replication slots and WAL senders."""
    s = _source(plan).get_replication_settings()
    slot_exists = _source(plan).get_slot_status(plan.subscription) is not None
    # The subscription needs one slot and one sender, and its initial copy a temporary pair per sync worker.
    needed = 0 if slot_exists else 1
    wanted = 0 if slot_exists else 3
    free_slots = s["max_replication_slots"] - s["used_replication_slots"]
    free_senders = s["max_wal_senders"] - s["used_wal_senders"]
    findings = [
        f"wal_level = {s['wal_level']}",
        f"replication slots: {s['used_replication_slots']} used of {s['max_replication_slots']} ({free_slots} free)",
        f"WAL senders: {s['used_wal_senders']} used of {s['max_wal_senders']} ({free_senders} free)",
        f"max_slot_wal_keep_size = {s['max_slot_wal_keep_size']}",
        f"Ferry's slot {plan.subscription}: {'exists' if slot_exists else 'not created yet'}",
    ]
    problems, remedies = [], []
    if s["wal_level"] != "logical":
        problems.append(f"wal_level is {s['wal_level']}, logical replication needs logical")
        remedies.append("ALTER SYSTEM SET wal_level = logical; then restart the source PostgreSQL")
    if free_slots < needed or free_senders < needed:
        problems.append("no free replication slot or WAL sender for the subscription")
        remedies.append(
            "raise max_replication_slots and max_wal_senders (ALTER SYSTEM SET ...; restart), "
            "or drop unused slots with pg_drop_replication_slot()"
        )
    if problems:
        return CheckResult("source_replication_settings", "fail", "; ".join(problems), findings, "; ".join(remedies))
    if free_slots < wanted or free_senders < wanted:
        return CheckResult(
            "source_replication_settings",
            "warn",
            f"only {min(free_slots, free_senders)} free slot(s)/sender(s): "
            "the initial copy will sync fewer tables at once",
            findings,
            f"raise max_replication_slots and max_wal_senders to leave at least {wanted} free",
        )
    return CheckResult("source_replication_settings", "pass", "source is ready to publish", findings)


def check_replica_identity(plan: Plan) -> CheckResult:
    """Every table in scope has a primary key or a replica identity, else UPDATE/DELETE break on the source."""
    tables = in_scope(plan, _source(plan).get_tables(plan.replication.schemas))
    bad = [
        t for t in tables if t["replica_identity"] == "n" or (t["replica_identity"] == "d" and not t["has_primary_key"])
    ]
    if not bad:
        return CheckResult("replica_identity", "pass", f"all {len(tables)} tables in scope can be replicated")
    findings = [
        f"{t['schema']}.{t['table']} has no primary key and no replica identity: "
        f"ALTER TABLE {t['schema']}.{t['table']} ADD PRIMARY KEY (<key columns>); "
        f"or, if no key exists, ALTER TABLE {t['schema']}.{t['table']} REPLICA IDENTITY FULL;"
        for t in bad
    ]
    return CheckResult(
        "replica_identity",
        "fail",
        f"{len(bad)} table(s) cannot be replicated: {', '.join(t['schema'] + '.' + t['table'] for t in bad)}",
        findings,
        "Once in a publication, UPDATE and DELETE on these tables fail on the SOURCE, breaking the "
        "application. Add a primary key (best) or set REPLICA IDENTITY FULL on each, as listed.",
    )


def check_writers(plan: Plan) -> CheckResult:
    """Every login role that can write a table in scope, and where the right comes from: the fence holds
    them all but Ferry's own role and ``source.keep_writing``."""
    source = _source(plan)
    scope = [t["qualified"] for t in in_scope(plan, source.get_tables(plan.replication.schemas))]
    writers = source.get_writers(fenced_tables(plan, source, scope))
    allowed, kept, listed = fence_allowed_roles(plan), plan.source.keep_writing, plan.source.app_roles
    findings = []
    for w in writers:
        if w["role"] in kept:
            fate = "source.keep_writing: NOT fenced, its writes after the cutover stay on the old side"
        elif w["role"] in allowed:
            fate = "Ferry's own role: not fenced"
        else:
            fate = "held by the fence" + ("" if w["role"] in listed else " (not in source.app_roles)")
        findings.append(f"{w['role']}: can write {len(w['tables'])} table(s) in scope ({'; '.join(w['via'])}); {fate}")
    problems = [
        f"role {r} named in the plan (source.app_roles or source.keep_writing) does not exist on the source"
        for r in source.missing_roles([*listed, *kept])
    ] + fence_problems(writers, allowed)
    if problems:
        return CheckResult(
            "writers",
            "fail",
            f"the fence cannot hold {len(problems)} role(s)",
            findings + problems,
            "Fix each role as its finding says (NOSUPERUSER, ownership to Ferry's role) or correct the plan's role "
            "names; a role the fence cannot hold would go on writing to the old side after the cutover.",
        )
    held = [w["role"] for w in writers if w["role"] not in allowed]
    if kept:
        return CheckResult(
            "writers",
            "warn",
            f"{', '.join(kept)} keep writing after the fence (source.keep_writing); the fence holds {len(held)} role(s)",
            findings,
            "What a source.keep_writing role writes after the cutover stays on the old side and is lost to the new "
            "one; remove it from keep_writing unless that is intended.",
        )
    return CheckResult(
        "writers",
        "pass",
        f"the fence holds every role that can write a table in scope: {', '.join(held) or 'none'}",
        findings,
    )


def check_not_replicated(plan: Plan) -> CheckResult:
    """What logical replication does not carry, each named with what Ferry does about it or the fix:
    unlogged tables, tables in scope the publication misses, large objects, materialized views, and
    partitioned tables (published through their root, so the target's partitions may differ)."""
    source, target = _source(plan), _target(plan)
    schemas = plan.replication.schemas
    scope = [t["qualified"] for t in in_scope(plan, source.get_tables(schemas))]
    findings, problems, warnings = [], [], []
    for table in source.get_unlogged_tables(schemas):
        if table in scope:
            problems.append(f"{table} is UNLOGGED: it writes no WAL, so it cannot be replicated")
            findings.append(f"{table}: unlogged; fix: ALTER TABLE {table} SET LOGGED (or exclude it in the plan)")
    published = source.get_publication_tables(plan.publication)
    if published is not None:
        for table in sorted(set(scope) - set(published)):
            problems.append(f"{table} is in scope but not in publication {plan.publication}")
            findings.append(
                f"{table}: not published (added to the source after the publication?); fix: create it on the target "
                f"(pg_dump --schema-only -t {table} of the source into the target), then run ferry_week_prior again: "
                "create_publication adds it and refresh_subscription copies its rows"
            )
    objects = source.get_large_objects()
    if objects:
        oids = ", ".join(str(o["oid"]) for o in objects[:10]) + (" ..." if len(objects) > 10 else "")
        if plan.replication.large_objects == "copy":
            findings.append(
                f"{len(objects)} large object(s) (oids {oids}): D-day copies them inside the freeze and verifies each"
            )
        else:
            warnings.append(f"{len(objects)} large object(s) left behind (replication.large_objects: out_of_scope)")
            findings.append(f"{len(objects)} large object(s) (oids {oids}): out of scope, NOT migrated")
    for view in source.get_materialized_views(schemas):
        findings.append(f"{view['view']}: materialized view; D-day refreshes it on the target after the cutover")
    source_parts, target_parts = source.get_partitions(schemas), target.get_partitions(schemas)
    roots = sorted({p["root"] for p in source_parts if p["root"] in scope})
    via_root = source.publishes_via_root(plan.publication)
    for root in roots:
        leaves = {(p["partition"], p["bounds"]) for p in source_parts if p["root"] == root}
        theirs = {(p["partition"], p["bounds"]) for p in target_parts if p["root"] == root}
        same = "the same partitions" if leaves == theirs else f"other partitions ({len(theirs)} against {len(leaves)})"
        findings.append(
            f"{root}: partitioned, {len(leaves)} partition(s); the target has {same if theirs else 'none yet'}; "
            "published through its root, so the target routes each row into its own partitions"
        )
        if via_root is False and theirs and leaves != theirs:
            problems.append(f"publication {plan.publication} publishes {root}'s partitions, which the target lacks")
            findings.append(
                f"fix: ALTER PUBLICATION {plan.publication} SET (publish_via_partition_root = true); then run "
                "ferry_week_prior again (refresh_subscription)"
            )
    if problems:
        return CheckResult(
            "not_replicated",
            "fail",
            f"{len(problems)} thing(s) replication would not carry: " + "; ".join(problems),
            findings,
            "Fix each as its finding says, then run ferry_preflight again.",
        )
    if warnings:
        return CheckResult(
            "not_replicated",
            "warn",
            "; ".join(warnings),
            findings,
            "Set replication.large_objects: copy to migrate them.",
        )
    return CheckResult(
        "not_replicated",
        "pass",
        "everything in scope is replicated, or copied or refreshed by D-day" if findings else "nothing to add",
        findings,
    )


def check_extensions(plan: Plan) -> CheckResult:
    """Every extension the source uses is available on the target in the same version (or a newer one),
    and which columns take their type from an extension."""
    source, target = _source(plan), _target(plan)
    used = source.get_extensions()
    findings, problems, warnings = extension_findings(used, target.get_extension_versions())
    for col in source.get_extension_columns(plan.replication.schemas):
        findings.append(f"{col['table']}.{col['column']}: type {col['type']} from extension {col['extension']}")
    if problems:
        return CheckResult(
            "extensions",
            "fail",
            "; ".join(problems),
            findings,
            "The schema copy (and every table using these types) fails on the target without them; fix each as listed.",
        )
    if warnings:
        return CheckResult(
            "extensions", "warn", "; ".join(warnings), findings, "Test the application against the target's versions."
        )
    return CheckResult(
        "extensions", "pass", f"all {len(used)} extension(s) of the source are available on the target", findings
    )


def extension_findings(used: dict[str, str], offered: dict[str, list[str]]) -> tuple[list[str], list[str], list[str]]:
    """Findings, problems and warnings for the source's extensions (name to version) against the
    versions the target offers (name to versions)."""
    findings, problems, warnings = [], [], []
    for name, version in used.items():
        versions = offered.get(name, [])
        if not versions:
            problems.append(f"{name} {version} is not available on the target")
            findings.append(
                f"{name} {version}: NOT available on the target; fix: use an instance that offers it (for RDS: "
                "check the engine version's supported extensions), or migrate off it before D-day"
            )
        elif version in versions:
            findings.append(f"{name} {version}: available on the target")
        elif any(_version_key(v) > _version_key(version) for v in versions):
            warnings.append(f"{name} {version} is offered on the target only as {', '.join(versions)}")
            findings.append(
                f"{name} {version}: the target offers {', '.join(versions)}; the schema copy installs its default "
                "version; test the application against it"
            )
        else:
            problems.append(f"{name} {version}: the target offers only older versions ({', '.join(versions)})")
            findings.append(f"{name} {version}: only older versions on the target; fix: upgrade the target's engine")
    return findings, problems, warnings


def _version_key(version: str) -> tuple[int, ...]:
    """An extension version as numbers, to order them (``1.10`` after ``1.9``)."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def check_schema_drift(plan: Plan) -> CheckResult:
    """Tables, columns and types of the scope match between source and target, once the target has a schema."""
    schemas = plan.replication.schemas
    scope = {(t["schema"], t["table"]) for t in in_scope(plan, _source(plan).get_tables(schemas))}

    def shape(hook: ReplicationHook) -> dict[tuple[str, str], dict[str, str]]:
        tables: dict[tuple[str, str], dict[str, str]] = {}
        for c in hook.get_columns(schemas):
            tables.setdefault((c["schema"], c["table"]), {})[c["column"]] = c["type"]
        return tables

    source = {k: v for k, v in shape(_source(plan)).items() if k in scope}
    target = shape(_target(plan))
    if not set(source) & set(target):
        return CheckResult(
            "schema_drift",
            "skip",
            "the target has none of the tables in scope yet; ferry_week_prior copies the schema",
        )
    findings = []
    for key in sorted(source):
        name = ".".join(key)
        if key not in target:
            findings.append(f"{name}: missing on the target")
            continue
        for column, type_ in source[key].items():
            if column not in target[key]:
                findings.append(f"{name}.{column} ({type_}): missing on the target")
            elif target[key][column] != type_:
                findings.append(f"{name}.{column}: {type_} on the source, {target[key][column]} on the target")
        findings += [f"{name}.{c}: only on the target" for c in target[key] if c not in source[key]]
    if findings:
        return CheckResult(
            "schema_drift",
            "fail",
            f"{len(findings)} difference(s) between source and target schemas",
            findings,
            "Apply the source's migrations to the target (or copy the schema again with ferry_week_prior "
            "while the target holds no rows) so that every table, column and type matches.",
        )
    return CheckResult("schema_drift", "pass", f"{len(source)} tables match on source and target")


def check_replication_health(plan: Plan) -> CheckResult:
    """When the subscription exists: enabled, worker running, no apply errors, lag and retained WAL in bounds."""
    sub = _target(plan).get_subscription_status(plan.subscription)
    if sub is None:
        return CheckResult(
            "replication_health",
            "skip",
            f"subscription {plan.subscription} does not exist yet (ferry_week_prior creates it)",
        )
    slot = _source(plan).get_slot_status(sub["slot_name"] or plan.subscription)
    findings = [
        f"subscription {plan.subscription}: enabled={sub['enabled']}, worker pid={sub['worker_pid']}, "
        f"apply errors={sub['apply_error_count']}, sync errors={sub['sync_error_count']}, "
        f"tables still copying={sub['tables_not_ready']}"
    ]
    problems, warnings = [], []
    if not sub["enabled"]:
        problems.append("the subscription is disabled")
    elif sub["worker_pid"] is None:
        problems.append("no apply worker is running (it exits on apply conflicts; see the target's server log)")
    if sub["apply_error_count"]:
        (problems if sub["worker_pid"] is None else warnings).append(
            f"{sub['apply_error_count']} apply error(s) since the statistics were reset"
        )
    if slot is None:
        problems.append(f"slot {sub['slot_name']} is missing on the source")
    else:
        findings.append(
            f"slot {slot['slot_name']}: active={slot['active']}, wal_status={slot['wal_status']}, "
            f"lag={slot['lag_bytes']} bytes, retained WAL={slot['retained_bytes']} bytes, "
            f"max_slot_wal_keep_size={slot['max_slot_wal_keep_bytes'] or 'unlimited'}"
        )
        if slot["wal_status"] == "lost":
            problems.append("the slot has lost WAL it needed: the subscription must be rebuilt")
        if slot["lag_bytes"] is not None and slot["lag_bytes"] > plan.thresholds.max_lag_bytes:
            warnings.append(
                f"lag {slot['lag_bytes']} bytes above thresholds.max_lag_bytes={plan.thresholds.max_lag_bytes}"
            )
        limit = slot["max_slot_wal_keep_bytes"]
        if limit and slot["retained_bytes"] > limit * plan.thresholds.wal_retained_warn_ratio:
            problems.append(
                f"the slot retains {slot['retained_bytes']} bytes of WAL, near max_slot_wal_keep_size ({limit}); "
                "the source will invalidate it"
            )
    remedy = (
        "Read the target's server log for the apply error; fix the conflicting row on the target, then "
        f"ALTER SUBSCRIPTION {plan.subscription} ENABLE. If the slot was lost, drop and recreate the subscription."
    )
    if problems:
        return CheckResult("replication_health", "fail", "; ".join(problems + warnings), findings, remedy)
    if warnings:
        return CheckResult("replication_health", "warn", "; ".join(warnings), findings, remedy)
    return CheckResult("replication_health", "pass", "replication is streaming", findings)


def check_sequences(plan: Plan) -> CheckResult:
    """List the sequences in scope (owned or not): logical replication does not carry them."""
    sequences = _source(plan).get_sequences(plan.replication.schemas)
    scope = {(t["schema"], t["table"]) for t in in_scope(plan, _source(plan).get_tables(plan.replication.schemas))}
    kept = [s for s in sequences if s["owner_table"] is None or (s["schema"], s["owner_table"]) in scope]
    target_seqs = {(s["schema"], s["sequence"]) for s in _target(plan).get_sequences(plan.replication.schemas)}
    findings = []
    for s in kept:
        owner = f"{s['owner_table']}.{s['owner_column']}" if s["owner_table"] else "owned by no column"
        kind = "identity" if s["identity"] else "sequence"
        findings.append(f"{s['schema']}.{s['sequence']} ({kind}, {owner}): last value {s['last_value']}")
    unowned = [f"{s['schema']}.{s['sequence']}" for s in kept if s["owner_table"] is None]
    missing = [f"{s['schema']}.{s['sequence']}" for s in kept if (s["schema"], s["sequence"]) not in target_seqs]
    if target_seqs and missing:
        return CheckResult(
            "sequences",
            "fail",
            f"{len(missing)} sequence(s) missing on the target: {', '.join(missing)}",
            findings,
            "Copy the schema again (ferry_week_prior) or create the sequences on the target.",
        )
    if unowned:
        return CheckResult(
            "sequences",
            "warn",
            f"{len(kept)} sequences in scope, {len(unowned)} owned by no column: {', '.join(unowned)}",
            findings,
            "Sequences are not replicated; D-day sets every one of them on the target, unowned ones included. "
            "Make sure the application has no sequence outside the plan's schemas.",
        )
    return CheckResult("sequences", "pass", f"{len(kept)} sequences in scope, all owned by a column", findings)


CHECKS: dict[str, Callable[[Plan], CheckResult]] = {
    "connections": check_connections,
    "source_replication_settings": check_source_replication_settings,
    "replica_identity": check_replica_identity,
    "writers": check_writers,
    "not_replicated": check_not_replicated,
    "extensions": check_extensions,
    "schema_drift": check_schema_drift,
    "replication_health": check_replication_health,
    "sequences": check_sequences,
}
