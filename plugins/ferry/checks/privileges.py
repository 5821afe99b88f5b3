"""Pre-flight check of Ferry's rights: every right the plan's steps will use, on each side, against its login.

Managed services give no superuser: DigitalOcean's ``doadmin`` and RDS's master user can do what Ferry needs
only if the right grants are in place. A right found missing on D-day would stop the freeze half-way, so each
one is read here, before any stage changes anything, and named with the statement that grants it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ferry.checks.base import CheckResult, source_hook, target_hook
from ferry.hooks.replication import ReplicationHook, fenced_tables
from ferry.plan import Plan, in_scope

PG16 = 160000


@dataclass
class Right:
    """One right a step will use: ``held`` or not, what needs it, and how to grant it."""

    side: str
    what: str
    needed_by: str
    held: bool
    grant: str = ""

    def finding(self) -> str:
        state = "ok" if self.held else "MISSING"
        fix = "" if self.held else f"; grant it: {self.grant}"
        return f"{self.side}: {self.what} ({self.needed_by}): {state}{fix}"


def check_privileges(plan: Plan) -> CheckResult:
    """Ferry's logins hold every right the plan's steps will use, without superuser: on the source, SSL,
    REPLICATION, ownership of each table in scope (publication, fence), ending the application's sessions,
    reading the sequences and large objects, CREATE on the database, and for the reverse replication
    pg_create_subscription; on the target, SSL, CREATE on the database and schemas, pg_create_subscription,
    REPLICATION, ownership (or SET ROLE to the owner) of each table in scope, setting the sequences, the
    extensions, and owning the copied large objects as their owners. Names each missing right and the grant."""
    source, target = source_hook(plan), target_hook(plan)
    source_facts, target_facts = source.fetch_one("privileges"), target.fetch_one("privileges")
    tables = [t["qualified"] for t in in_scope(plan, source.get_tables(plan.replication.schemas))]
    # Large objects by owner, read once: their readability on the source, their owners on the target.
    objects = source.fetch("privileges_large_objects") if plan.replication.large_objects == "copy" else []
    rights = source_rights(plan, source, source_facts, tables, objects) + target_rights(
        plan, target, target_facts, source_facts, source, tables, objects
    )
    missing = [r for r in rights if not r.held]
    findings = [
        *(
            f"Ferry on the {side}: login {facts['login']}, PostgreSQL {facts['server_version_num'] // 10000}, "
            f"superuser={facts['superuser']}"
            for side, facts in (("source", source_facts), ("target", target_facts))
        ),
        *(r.finding() for r in rights),
    ]
    if missing:
        return CheckResult(
            "privileges",
            "fail",
            f"{len(missing)} right(s) Ferry's steps need are missing: "
            + "; ".join(f"{r.side}: {r.what}" for r in missing[:8])
            + (" ..." if len(missing) > 8 else ""),
            findings,
            "Grant each missing right as its finding says (on RDS as the master user, on DigitalOcean as doadmin; "
            "where only the provider can grant it, ask its support), then run ferry_preflight again. Ferry never "
            "needs superuser.",
        )
    return CheckResult(
        "privileges",
        "pass",
        f"Ferry's logins hold all {len(rights)} right(s) the plan's steps use "
        f"({source_facts['login']} on the source, {target_facts['login']} on the target)",
        findings,
    )


def _role(facts: dict[str, Any], name: str) -> bool:
    return bool(facts["superuser"] or facts["roles"].get(name))


def _ssl(side: str, facts: dict[str, Any], conn_id: str) -> Right:
    return Right(
        side,
        "an SSL session",
        "every connection (managed services refuse others; the data crosses networks)",
        facts["ssl"],
        f"set sslmode (verify-full) and sslrootcert (the provider's CA bundle) in the extras of Airflow connection "
        f"{conn_id}",
    )


def _replication(side: str, facts: dict[str, Any], needed_by: str) -> Right:
    login = facts["login"]
    held = facts["superuser"] or facts["replication"] or (facts["on_rds"] and facts["roles"].get("rds_replication"))
    return Right(
        side,
        "replication (REPLICATION, or rds_replication on RDS)",
        needed_by,
        bool(held),
        f"on RDS: GRANT rds_replication TO {login}; on DigitalOcean doadmin has REPLICATION (ask support if not); "
        f"self-managed: ALTER ROLE {login} REPLICATION",
    )


def _ownership(side: str, login: str, rows: list[dict[str, Any]], what: str, needed_by: str, key: str) -> Right:
    lacking = [f"{r['name']} (owner {r['owner']})" for r in rows if not r[key]]
    return Right(
        side,
        f"{what} of {len(rows)} table(s) in scope" + (f", lacking on {', '.join(lacking[:5])}" if lacking else ""),
        needed_by,
        not lacking,
        f"ALTER TABLE <table> OWNER TO {login} for each (as the owner), or GRANT <owner> TO {login}",
    )


def source_rights(
    plan: Plan, source: ReplicationHook, facts: dict[str, Any], tables: list[str], owners: list[dict[str, Any]]
) -> list[Right]:
    login = facts["login"]
    objects = source.fetch(
        "privileges_tables", tables=fenced_tables(plan, source, tables), schemas=plan.replication.schemas
    )
    relations = [o for o in objects if o["kind"] != "S"]
    sequences = [o for o in objects if o["kind"] == "S"]
    rights = [
        _ssl("source", facts, plan.source.conn_id),
        _replication("source", facts, "the subscription's slot and its stream; D-day's change capture"),
        Right(
            "source",
            "CREATE on the database",
            "the publication; the fence's function in schema ferry",
            facts["superuser"] or facts["create_on_database"],
            f"GRANT CREATE ON DATABASE {plan.source.database} TO {login} (doadmin owns the databases it made)",
        ),
        _ownership(
            "source",
            login,
            relations,
            "ownership",
            "CREATE PUBLICATION lists only tables its login owns; the fence's triggers",
            "owns",
        ),
        Right(
            "source",
            "pg_signal_backend",
            "the fence ends the application's sessions",
            _role(facts, "pg_signal_backend"),
            f"GRANT pg_signal_backend TO {login} (doadmin has it on DigitalOcean; RDS: rds_superuser has it)",
        ),
        Right(
            "source",
            "pg_read_all_stats",
            "seeing every session of the application's roles",
            _role(facts, "pg_read_all_stats"),
            f"GRANT pg_read_all_stats TO {login}",
        ),
    ]
    unread = [s["name"] for s in sequences if not s["can_read"]]
    rights.append(
        Right(
            "source",
            f"reading {len(sequences)} sequence(s)" + (f", not {', '.join(unread[:5])}" if unread else ""),
            "the sequences' values set on the target at the cutover",
            not unread,
            f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA <schema> TO {login}",
        )
    )
    if plan.replication.large_objects == "copy":
        unreadable = [f"{o['unreadable']} of {o['owner']}'s" for o in owners if o["unreadable"]]
        rights.append(
            Right(
                "source",
                f"reading {sum(o['objects'] for o in owners)} large object(s)"
                + (f", not {', '.join(unreadable)}" if unreadable else ""),
                "the large objects' copy (logical replication does not carry them)",
                not unreadable,
                f"GRANT <owner> TO {login} for each owner named (PostgreSQL 16: as a role with ADMIN OPTION on it, "
                "e.g. the role's creator), or GRANT SELECT ON LARGE OBJECT <oid> TO it",
            )
        )
    if plan.replication.reverse:
        rights.append(
            Right(
                "source",
                "pg_create_subscription (PostgreSQL 16 or later)",
                "the reverse replication's subscription on the old side",
                facts["superuser"] or (facts["server_version_num"] >= PG16 and _role(facts, "pg_create_subscription")),
                f"GRANT pg_create_subscription TO {login} (PostgreSQL 16 or later; on 15 and older only a superuser "
                "may subscribe: upgrade the old cluster, or remove replication.reverse)",
            )
        )
        rights.append(
            _ownership(
                "source",
                login,
                relations,
                "SET ROLE to the owner",
                "the reverse subscription applies each table's rows as its owner",
                "may_become_owner",
            )
        )
    return rights


def target_rights(
    plan: Plan,
    target: ReplicationHook,
    facts: dict[str, Any],
    source_facts: dict[str, Any],
    source: ReplicationHook,
    tables: list[str],
    large_objects: list[dict[str, Any]],
) -> list[Right]:
    login = facts["login"]
    rights = [
        _ssl("target", facts, plan.target.conn_id),
        Right(
            "target",
            "CREATE on the database",
            "the subscription; the schema copy's schemas; the reverse publication; schema ferry",
            facts["superuser"] or facts["create_on_database"],
            f"GRANT CREATE ON DATABASE {plan.target.database} TO {login} (on RDS the master user owns the databases "
            "it creates)",
        ),
        Right(
            "target",
            "pg_create_subscription (PostgreSQL 16 or later)",
            "the subscription that copies and streams the source's rows",
            facts["superuser"] or (facts["server_version_num"] >= PG16 and _role(facts, "pg_create_subscription")),
            f"on RDS: GRANT rds_superuser TO {login} (the master user has it); elsewhere GRANT pg_create_subscription "
            f"TO {login}",
        ),
        _replication("target", facts, "D-day's change capture; the reverse replication's slot and stream"),
    ]
    present = target.fetch("privileges_tables", tables=tables, schemas=plan.replication.schemas)
    relations = [o for o in present if o["kind"] != "S"]
    if relations:  # before the schema copy the target has no table yet: Ferry's login will own what it creates
        rights.append(
            _ownership(
                "target",
                login,
                relations,
                "SET ROLE to the owner",
                "the subscription applies each table's rows as its owner",
                "may_become_owner",
            )
        )
        rights.append(
            _ownership(
                "target", login, relations, "ownership", "REFRESH MATERIALIZED VIEW; the reverse publication", "owns"
            )
        )
    unset = [s["name"] for s in present if s["kind"] == "S" and not s["can_change"]]
    rights.append(
        Right(
            "target",
            "setting the sequences" + (f", not {', '.join(unset[:5])}" if unset else ""),
            "the sequences set past the source's values at the cutover",
            not unset,
            f"GRANT UPDATE ON ALL SEQUENCES IN SCHEMA <schema> TO {login}",
        )
    )
    if plan.replication.reverse:
        rights.append(
            Right(
                "target",
                "pg_signal_backend",
                "the fence on the way back ends the application's sessions on the new side",
                _role(facts, "pg_signal_backend"),
                f"on RDS: GRANT rds_superuser TO {login}; elsewhere GRANT pg_signal_backend TO {login}",
            )
        )
    rights += _extension_rights(plan, target, facts, source)
    if plan.replication.large_objects == "copy":
        owners = sorted({login if o["owner"] == source_facts["login"] else o["owner"] for o in large_objects} - {login})
        if owners and not facts["superuser"]:
            found = target.fetch("roles_settable", roles=owners)
            lacking = [f"{r['role']}{'' if r['exists'] else ' (no such role)'}" for r in found if not r["settable"]]
            rights.append(
                Right(
                    "target",
                    "SET ROLE to the large objects' owners" + (f", not {', '.join(lacking)}" if lacking else ""),
                    "the copied large objects keep their owners (ALTER LARGE OBJECT ... OWNER TO)",
                    not lacking,
                    f"create each role named on the target, then GRANT <role> TO {login} (as its creator on RDS: "
                    "the master user)",
                )
            )
    return rights


def _extension_rights(
    plan: Plan, target: ReplicationHook, facts: dict[str, Any], source: ReplicationHook
) -> list[Right]:
    """Each extension in scope on the source that the target lacks: Ferry's login may create it there."""
    wanted = {r["name"] for r in source.fetch("extensions") if r["schema"] in plan.replication.schemas}
    installed = set(target.get_extensions())
    missing = sorted(wanted - installed)
    if not missing:
        return []
    rows = {r["name"]: r for r in target.fetch("extension_trusted", names=missing)}
    lacking = [
        name
        for name in missing
        if not (facts["superuser"] or (name in rows and (rows[name]["trusted"] or _role(facts, "rds_superuser"))))
    ]
    return [
        Right(
            "target",
            f"creating extension(s) {', '.join(missing)}" + (f", not {', '.join(lacking)}" if lacking else ""),
            "the schema copy (CREATE EXTENSION before the tables that use it)",
            not lacking,
            "on RDS the master user (rds_superuser) creates the extensions RDS supports; elsewhere a trusted extension "
            "needs CREATE on the database, any other one the provider (or a superuser) to create it",
        )
    ]
