"""Pre-flight checks of what logical replication does not carry, and of the extensions the source uses."""

from __future__ import annotations

import re

from ferry.checks.base import CheckResult, source_hook, target_hook
from ferry.plan import Plan, in_scope


def check_not_replicated(plan: Plan) -> CheckResult:
    """What logical replication does not carry, each named with what Ferry does about it or the fix:
    unlogged tables, tables in scope the publication misses, large objects, materialized views, and
    partitioned tables (published through their root, so the target's partitions may differ)."""
    source, target = source_hook(plan), target_hook(plan)
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
            warnings.append(f"{table} is in scope but not yet in publication {plan.publication}")
            findings.append(
                f"{table}: not published (added to the source after the publication); ferry_week_prior run again, "
                "or ferry_d_day's scope step, creates it on the target (copy_schema), publishes it "
                "(create_publication) and copies its rows (refresh_subscription, wait_initial_copy)"
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
            "Run ferry_week_prior again for tables added to the source (ferry_d_day adds them too); set "
            "replication.large_objects: copy to migrate large objects.",
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
    source, target = source_hook(plan), target_hook(plan)
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
