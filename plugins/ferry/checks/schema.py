"""Pre-flight checks of the schema: replica identity, drift between the sides, sequences."""

from __future__ import annotations

import dataclasses

from ferry.checks.base import CheckResult, source_hook, target_hook
from ferry.hooks.replication import ReplicationHook
from ferry.plan import Plan, in_scope
from ferry.schemas import Difference, differences, read_shape


def check_replica_identity(plan: Plan) -> CheckResult:
    """Every table in scope has a primary key or a replica identity, else UPDATE/DELETE break on the source."""
    tables = in_scope(plan, source_hook(plan).get_tables(plan.replication.schemas))
    bad = [
        t for t in tables if t["replica_identity"] == "n" or (t["replica_identity"] == "d" and not t["has_primary_key"])
    ]
    if not bad:
        return CheckResult("replica_identity", "pass", f"all {len(tables)} tables in scope can be replicated")
    indexes: dict[str, str] = {}
    for row in source_hook(plan).fetch("identity_indexes", tables=[t["qualified"] for t in bad]):
        indexes.setdefault(row["qualified"], row["index"])
    findings = [
        f"{t['schema']}.{t['table']} has no primary key and no replica identity: "
        + (
            f"ALTER TABLE {t['qualified']} REPLICA IDENTITY USING INDEX {indexes[t['qualified']]}; (a unique index "
            f"on NOT NULL columns: the key without a rewrite); or ALTER TABLE {t['schema']}.{t['table']} ADD PRIMARY "
            "KEY (<key columns>);"
            if t["qualified"] in indexes
            else f"ALTER TABLE {t['schema']}.{t['table']} ADD PRIMARY KEY (<key columns>); "
            f"or, if no key exists, ALTER TABLE {t['schema']}.{t['table']} REPLICA IDENTITY FULL;"
        )
        for t in bad
    ]
    return CheckResult(
        "replica_identity",
        "fail",
        f"{len(bad)} table(s) cannot be replicated: {', '.join(t['schema'] + '.' + t['table'] for t in bad)}",
        findings,
        "Once in a publication, UPDATE and DELETE on these tables fail on the SOURCE, breaking the "
        "application. Add a primary key (best), use a unique index on NOT NULL columns as the replica identity, or "
        "set REPLICA IDENTITY FULL on each, as listed.",
    )


@dataclasses.dataclass
class SchemaDifferences:
    """How the target's schema differs from the source's, for the tables in scope."""

    in_scope: int
    shared: int
    missing: list[str]
    """Tables in scope (quoted, schema-qualified) the target lacks: added to the source since the copy."""
    fixes: list[Difference]
    """Every other difference (columns, types, nullability, defaults, constraints, indexes, partitions), each with
    the statement that makes the target match."""

    @property
    def other(self) -> list[str]:
        """Those differences in words."""
        return [d.what for d in self.fixes]


def schema_differences(plan: Plan) -> SchemaDifferences:
    """The schema of the tables in scope, source against target (:mod:`ferry.schemas`)."""
    source, target = read_shape(plan, source_hook(plan)), read_shape(plan, target_hook(plan))
    missing, fixes = differences(source, target)
    return SchemaDifferences(len(source.tables), len(set(source.tables) & set(target.tables)), missing, fixes)


def apply_stoppers(plan: Plan) -> list[Difference]:
    """The schema differences that stop the forward subscription's apply at the first row that needs them (a
    column, a renamed column, a partition the target lacks, a NOT NULL column the source dropped): the cause of its
    apply errors, which the statistics count without their text."""
    return [d for d in schema_differences(plan).fixes if d.stops_apply]


#: What to say when apply errors have no schema difference to explain them.
ROW_REFUSED = (
    "No schema difference explains the apply's errors: the target refuses a row (a unique, foreign-key or check "
    "violation, or a trigger), or could not reach the source. The target's server log names it (on RDS: aws rds "
    "download-db-log-file-portion, or the console's Logs tab; look for 'logical replication'). Fix that row on the "
    "target, or the check that refuses it."
)


def explain_apply_errors(causes: list[Difference]) -> str:
    """Why the forward subscription's apply fails, given :func:`apply_stoppers`, with the fix."""
    if not causes:
        return ROW_REFUSED
    return (
        "The source's schema changed and the target's apply stops at the first row that needs: "
        + "; ".join(d.finding() for d in causes)
        + ". Run those statements on the target, in order (ferry_schema_watch does it within "
        "replication.ddl_watch_interval_s with replication.ddl: carry); the apply resumes by itself, the slot kept "
        "every row."
    )


def check_schema_drift(plan: Plan) -> CheckResult:
    """The schema of the tables in scope matches between source and target (columns with their types,
    nullability and defaults; constraints; indexes; partitions), once the target has a schema.

    While the reverse replication runs (after the cutover), the new side leads: see :func:`reverse_drift`."""
    found = schema_differences(plan)
    if plan.replication.reverse is not None and (
        source_hook(plan).get_subscription_status(plan.reverse_subscription) is not None
    ):
        return reverse_drift(plan, found)
    if not found.shared:
        return CheckResult(
            "schema_drift",
            "skip",
            "the target has none of the tables in scope yet; ferry_week_prior copies the schema",
        )
    if found.fixes:
        return CheckResult(
            "schema_drift",
            "fail",
            f"{len(found.fixes) + len(found.missing)} difference(s) between source and target schemas",
            [*(d.finding() for d in found.fixes), *(f"{t}: missing on the target" for t in found.missing)],
            "Logical replication carries rows, not schema changes: run each statement listed on the target, as "
            "Ferry's login, in the order listed (a missing column or partition first: until then the subscription's "
            "apply stops at the first row that needs it; then ALTER SUBSCRIPTION ... ENABLE if it was disabled). "
            "Or copy the schema again with ferry_week_prior while the target holds no rows.",
        )
    if found.missing:
        return CheckResult(
            "schema_drift",
            "warn",
            f"{len(found.missing)} table(s) in scope added to the source since the schema copy: "
            + ", ".join(found.missing),
            [f"{t}: missing on the target" for t in found.missing],
            "copy_schema (ferry_week_prior run again, or ferry_d_day's scope step) creates them on the target; "
            "create_publication and refresh_subscription then bring their rows.",
        )
    return CheckResult("schema_drift", "pass", f"{found.in_scope} tables match on source and target")


def check_sequences(plan: Plan) -> CheckResult:
    """List the sequences in scope (owned or not): logical replication does not carry them."""
    sequences = source_hook(plan).get_sequences(plan.replication.schemas)
    scope = {(t["schema"], t["table"]) for t in in_scope(plan, source_hook(plan).get_tables(plan.replication.schemas))}
    kept = [s for s in sequences if s["owner_table"] is None or (s["schema"], s["owner_table"]) in scope]
    target_seqs = {(s["schema"], s["sequence"]) for s in target_hook(plan).get_sequences(plan.replication.schemas)}
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


def outside_reverse_publication(plan: Plan, target: ReplicationHook) -> list[str]:
    """The tables in scope on the target (quoted, schema-qualified) that the reverse publication does not carry:
    created on the new side since the cutover."""
    published = set(target.get_publication_tables(plan.reverse_publication) or [])
    return [
        t["qualified"]
        for t in in_scope(plan, target.get_tables(plan.replication.schemas))
        if t["qualified"] not in published
    ]


def reverse_drift(plan: Plan, found: SchemaDifferences) -> CheckResult:
    """After the cutover, with the reverse replication on: what it would not carry back to the old source.

    Logical replication carries rows, not DDL. A migration run on the new side (a column added or changed) stops
    the old source's apply worker at the first row that holds it, and a table created there is in no
    publication: its rows would stay behind in a rollback after the cutover. Both are named, with the fix on
    each side."""
    publication, subscription = plan.reverse_publication, plan.reverse_subscription
    unpublished = outside_reverse_publication(plan, target_hook(plan))
    findings = [
        *(d.what for d in found.fixes if d.kind != "drop table"),  # a table only on the new side: named below
        *(f"{t}: only on the old source (dropped on the new side?)" for t in found.missing),
        *(
            f"{t}: on the target but not in the reverse publication {publication}: its rows would stay on the new "
            "side in a rollback"
            for t in unpublished
        ),
    ]
    if not findings:
        return CheckResult(
            "schema_drift",
            "pass",
            f"{found.in_scope} tables match on the old source and the target, each in the reverse publication",
        )
    return CheckResult(
        "schema_drift",
        "fail",
        f"{len(findings)} schema difference(s) since the cutover that the reverse replication does not carry: a "
        "rollback after the cutover would stop or leave writes behind",
        findings,
        "The new side leads now: run each migration made on the target on the old source too, before the "
        "application writes what it adds (the old source's apply worker stops at the first row it cannot apply). "
        f"For a table created on the new side: create it on the old source, then ALTER PUBLICATION {publication} "
        f"ADD TABLE <table> on the target and ALTER SUBSCRIPTION {subscription} REFRESH PUBLICATION on the old "
        "source (it copies the table's rows, then streams them).",
    )
