"""The schema of the tables in scope, read from each side's catalogs, and how the target's differs from the
source's: each difference named, with the statement that makes the target match, to run on the target.

Compared per table in scope: columns (type, nullability, default; a column renamed on the source is told from
one dropped and one added when exactly one of each has the same type and the same place), indexes no constraint
owns, constraints (primary keys, unique, check, foreign keys, exclusion), and partitions (a source partition
whose bounds no target partition of the same root has: rows of those bounds would find no partition there; a
target partitioned otherwise, with bounds the source lacks, is left to ``check_not_replicated``).
Logical replication carries rows, not these: the pre-flight's ``schema_drift`` fails on any of them before D-day.
Read in UTC on both sides (bounds and defaults holding timestamps), so that the text compares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import dict_row

from ferry.hooks.postgres import load_sql
from ferry.plan import Plan, in_scope


@dataclass(frozen=True)
class Difference:
    """One way the target's schema differs from the source's."""

    table: str  # the table, quoted and schema-qualified (or the function, view or extension)
    what: str  # what differs, in words
    fix: str  # the statement(s) to run on the target, in order, separated by "; "
    kind: str = "other"  # what it changes: one of ORDER
    unsafe: str = ""  # why ferry_schema_watch does not run the fix by itself ("" when it does)
    warning: str = ""  # what carrying it leaves for a person to check
    stops_apply: bool = False  # the subscription's apply stops at the first row that needs the fix
    steps: tuple[str, ...] = ()  # the fix's statements when one holds "; " (a DO block)

    @property
    def statements(self) -> list[str]:
        """The fix, one statement each (``CONCURRENTLY`` cannot share a statement string with another)."""
        return list(self.steps) or [part for part in self.fix.split("; ") if part]

    def finding(self) -> str:
        return f"{self.what}; on the target: {self.fix}" + (f" (beware: {self.warning})" if self.warning else "")


@dataclass
class Shape:
    """One side's schema of the tables in scope."""

    tables: dict[tuple[str, str], str] = field(default_factory=dict)  # (schema, table) -> quoted name
    columns: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    indexes: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    constraints: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    partitions: dict[str, dict[str, str]] = field(default_factory=dict)  # root -> bounds -> partition
    triggers: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # signature -> row
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # quoted name -> row
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> row


CATALOGS = ("tables", "columns", "indexes", "constraints", "partitions", "triggers", "functions", "views", "extensions")


def read_catalogs(hook: Any, schemas: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each catalog query of :data:`CATALOGS` for ``schemas``, in one session of its own whose TimeZone is UTC:
    partition bounds and defaults holding timestamps then read the same on both sides whatever each server's
    setting (the hook's kept session is left as it is)."""
    with hook.session() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET TimeZone = 'UTC'")
        found = {}
        for name in CATALOGS:
            cur.execute(load_sql(name), {"schemas": schemas})
            found[name] = cur.fetchall()
        return found


def read_shape(plan: Plan, hook: Any, scope: set[tuple[str, str]] | None = None) -> Shape:
    """The schema of the tables in scope on the server of ``hook`` (``scope``: these tables, else the plan's)."""
    found = read_catalogs(hook, plan.replication.schemas)
    rows = found["tables"]
    wanted = scope if scope is not None else {(t["schema"], t["table"]) for t in in_scope(plan, rows)}
    shape = Shape(
        tables={(t["schema"], t["table"]): t["qualified"] for t in rows if (t["schema"], t["table"]) in wanted}
    )
    for c in found["columns"]:
        if (c["schema"], c["table"]) in shape.tables:
            shape.columns.setdefault((c["schema"], c["table"]), []).append(c)
    for i in found["indexes"]:
        if (i["schema"], i["table"]) in shape.tables:
            shape.indexes.setdefault((i["schema"], i["table"]), {})[i["index"]] = i
    for k in found["constraints"]:
        if (k["schema"], k["table"]) in shape.tables:
            shape.constraints.setdefault((k["schema"], k["table"]), {})[k["constraint"]] = k
    for t in found["triggers"]:
        if (t["schema"], t["table"]) in shape.tables:
            shape.triggers.setdefault((t["schema"], t["table"]), {})[t["trigger"]] = t
    roots = set(shape.tables.values())
    for p in found["partitions"]:
        if p["root"] in roots:
            shape.partitions.setdefault(p["root"], {})[p["bounds"]] = p["partition"]
    # Functions and views of the plan's schemas, whichever tables they read; the extensions installed there.
    shape.functions = {f["signature"]: f for f in found["functions"]}
    shape.views = {v["qualified"]: v for v in found["views"]}
    shape.extensions = {e["name"]: e for e in found["extensions"] if e["schema"] in plan.replication.schemas}
    return shape


def _add_column(table: str, c: dict[str, Any]) -> str:
    default = f" DEFAULT {c['default']}" if c["default"] is not None and not c["generated"] else ""
    generated = f" GENERATED ALWAYS AS ({c['default']}) STORED" if c["generated"] else ""
    return f"ALTER TABLE {table} ADD COLUMN {c['quoted']} {c['type']}{default}{generated}" + (
        " NOT NULL" if c["not_null"] else ""
    )


def _columns(name: str, table: str, source: list[dict], target: list[dict]) -> list[Difference]:
    found: list[Difference] = []
    on_source, on_target = {c["column"]: c for c in source}, {c["column"]: c for c in target}
    added = [c for c in source if c["column"] not in on_target]
    dropped = [c for c in target if c["column"] not in on_source]
    if len(added) == 1 and len(dropped) == 1:
        new, old = added[0], dropped[0]
        if new["type"] == old["type"] and new["position"] == old["position"]:
            found.append(
                Difference(
                    table,
                    f"{name}.{new['column']} ({new['type']}): renamed on the source from {old['column']}",
                    f"ALTER TABLE {table} RENAME COLUMN {old['quoted']} TO {new['quoted']}",
                    "rename",
                    stops_apply=True,
                )
            )
            on_target[new["column"]] = {**old, "column": new["column"], "quoted": new["quoted"]}
            added, dropped = [], []
    for c in added:
        found.append(
            Difference(
                table,
                f"{name}.{c['column']} ({c['type']}): missing on the target",
                _add_column(table, c),
                "column",
                warning=computed_default_warning(name, c),
                stops_apply=True,
            )
        )
    for c in dropped:
        stops = c["not_null"] and c["default"] is None and not c["generated"]
        found.append(
            Difference(
                table,
                f"{name}.{c['column']}: only on the target"
                + (" (NOT NULL without a default: the source's new rows fail there)" if stops else ""),
                f"ALTER TABLE {table} DROP COLUMN {c['quoted']}",
                "drop column",
                stops_apply=stops,
            )
        )
    for c in source:
        t = on_target.get(c["column"])
        if t is None:
            continue
        column = f"ALTER TABLE {table} ALTER COLUMN {c['quoted']}"
        if t["type"] != c["type"]:
            found.append(
                Difference(
                    table,
                    f"{name}.{c['column']}: {c['type']} on the source, {t['type']} on the target",
                    f"{column} TYPE {c['type']}",
                    "type",
                    "" if widens(t["type"], c["type"]) else "not a widening: the target's values may not convert",
                )
            )
        if t["not_null"] != c["not_null"]:
            found.append(
                Difference(
                    table,
                    f"{name}.{c['column']}: {'NOT NULL' if c['not_null'] else 'nullable'} on the source, "
                    f"{'NOT NULL' if t['not_null'] else 'nullable'} on the target",
                    f"{column} {'SET' if c['not_null'] else 'DROP'} NOT NULL",
                    "column",
                )
            )
        if (t["default"] or None) != (c["default"] or None) and not c["generated"]:
            found.append(
                Difference(
                    table,
                    f"{name}.{c['column']}: default {c['default'] or 'none'} on the source, "
                    f"{t['default'] or 'none'} on the target",
                    f"{column} SET DEFAULT {c['default']}" if c["default"] else f"{column} DROP DEFAULT",
                    "column",
                )
            )
    return found


def relaxed(dropped: Difference) -> Difference:
    """For a column the source dropped that the target holds NOT NULL without a default (the source's new rows
    fail there): the target's column made nullable, until the drop itself can be carried."""
    statement = dropped.fix.replace(" DROP COLUMN ", " ALTER COLUMN ", 1) + " DROP NOT NULL"
    return Difference(dropped.table, f"{dropped.what}: made nullable until it is dropped", statement, "column")


def computed_default_warning(name: str, column: dict[str, Any]) -> str:
    """For a column added with a default that calls a function (``now()``, ``gen_random_uuid()``, ``nextval``):
    the values the rows the target already holds get from it there differ from the source's."""
    default = column["default"]
    if default is None or column["generated"] or "(" not in re.sub(r"'(?:[^']|'')*'", "", default):
        return ""
    return (
        f"{name}.{column['column']}'s default {default} is computed: the rows the source held when the column was "
        "added got their values there, the rows the target holds get others from it here. D-day's comparison names "
        f"those rows; copy the source's values of {column['column']} into them before D-day (or re-copy the table)"
    )


#: The order ferry_schema_watch carries differences in: what the subscription's apply waits for first (a partition
#: its rows need, a column they carry, a renamed column), then types and defaults, constraints and indexes, and
#: what the source dropped last.
ORDER = (
    "extension",
    "function",
    "partition",
    "rename",
    "column",
    "type",
    "constraint",
    "index",
    "trigger",
    "view",
    "drop view",
    "drop trigger",
    "drop",
    "drop column",
    "drop table",
    "drop function",
    "other",
)


def in_carrying_order(found: list[Difference]) -> list[Difference]:
    return sorted(found, key=lambda d: ORDER.index(d.kind) if d.kind in ORDER else len(ORDER))


_INTEGERS = ("smallint", "integer", "bigint")
_SIZED = re.compile(r"^(character varying|numeric)\((\d+)(?:,(\d+))?\)$")


def widens(old: str, new: str) -> bool:
    """Whether changing a column from type ``old`` to ``new`` keeps every value (a widening): a larger integer,
    ``varchar(n)`` to a longer one or to ``text``, ``numeric(p,s)`` to more digits with the same scale."""
    if old in _INTEGERS and new in _INTEGERS:
        return _INTEGERS.index(new) >= _INTEGERS.index(old)
    if old.startswith("character varying") and new == "text":
        return True
    a, b = _SIZED.match(old), _SIZED.match(new)
    if a and b and a.group(1) == b.group(1):
        if a.group(1) == "character varying":
            return int(b.group(2)) >= int(a.group(2))
        return int(b.group(2)) - int(b.group(3) or 0) >= int(a.group(2)) - int(a.group(3) or 0) and (
            a.group(3) == b.group(3)
        )
    return False


def _concurrently(definition: str) -> str:
    return re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX CONCURRENTLY ", definition)


def _named(name: str, table: str, what: str, source: dict, target: dict, create: Any, drop: Any) -> list[Difference]:
    """Indexes, constraints or triggers (``what``) of one table, by name: missing on the target, defined otherwise
    there, or only there. ``create`` and ``drop`` give the statement for one of them."""

    def label(object_name: str, row: dict[str, Any]) -> str:
        return f"{what} {object_name}" + (f" ({row['definition']})" if what == "constraint" else "")

    found = []
    for object_name, row in sorted(source.items()):
        there = target.get(object_name)
        if there is None:
            found.append(
                Difference(table, f"{name}: {label(object_name, row)} missing on the target", create(row), what)
            )
        elif there["definition"] != row["definition"]:
            found.append(
                Difference(
                    table,
                    f"{name}: {what} {object_name} is {row['definition']} on the source, {there['definition']} on the "
                    "target",
                    f"{drop(there)}; {create(row)}",
                    what,
                )
            )
    for object_name, there in sorted(target.items()):
        if object_name not in source:
            found.append(
                Difference(
                    table,
                    f"{name}: {label(object_name, there)} only on the target",
                    drop(there),
                    "drop trigger" if what == "trigger" else "drop",
                )
            )
    return found


def _add_constraint(table: str, k: dict[str, Any]) -> str:
    add = f"ALTER TABLE {table} ADD CONSTRAINT {k['quoted']} {k['definition']}"
    if k["kind"] in ("c", "f"):  # checked without holding the table, then validated
        return f"{add} NOT VALID; ALTER TABLE {table} VALIDATE CONSTRAINT {k['quoted']}"
    return add


#: The objects of one table compared by name: what each is called, and the Shape field holding them.
PER_TABLE = (("constraint", "constraints"), ("index", "indexes"), ("trigger", "triggers"))
#: For each, the statements that create one on the target and drop one there (given the table and its row).
PER_TABLE_STATEMENTS = {
    "constraint": (_add_constraint, lambda table, k: f"ALTER TABLE {table} DROP CONSTRAINT {k['quoted']}"),
    "index": (
        lambda table, i: _concurrently(i["definition"]),
        lambda table, i: f"DROP INDEX CONCURRENTLY {i['quoted']}",
    ),
    "trigger": (lambda table, t: t["definition"], lambda table, t: f"DROP TRIGGER {t['quoted']} ON {table}"),
}


def differences(source: Shape, target: Shape) -> tuple[list[str], list[Difference]]:
    """The tables in scope the target lacks (quoted names), and every other difference of the tables both have,
    each with the statement that makes the target match."""
    missing = [q for key, q in sorted(source.tables.items()) if key not in target.tables]
    found: list[Difference] = []
    for key, table in sorted(source.tables.items()):
        if key not in target.tables:
            continue
        name = ".".join(key)
        found += _columns(name, table, source.columns.get(key, []), target.columns.get(key, []))
        for what, kept in PER_TABLE:
            create, drop = PER_TABLE_STATEMENTS[what]
            found += _named(
                name,
                table,
                what,
                getattr(source, kept).get(key, {}),
                getattr(target, kept).get(key, {}),
                lambda row, create=create, table=table: create(table, row),
                lambda row, drop=drop, table=table: drop(table, row),
            )
        have, want = target.partitions.get(table, {}), source.partitions.get(table, {})
        if not set(have) <= set(want):
            continue  # the target is partitioned otherwise (check_not_replicated names it): not compared by bounds
        for bounds, partition in sorted(want.items()):
            if bounds not in have:
                found.append(
                    _add_partition(name, table, partition, bounds, have.get("DEFAULT"), target.columns.get(key, []))
                )
    for key, table in sorted(target.tables.items()):
        if key not in source.tables:
            found.append(
                Difference(
                    table,
                    f"{'.'.join(key)}: a table in scope only on the target (dropped on the source?)",
                    f"DROP TABLE {table}",
                    "drop table",
                    "its rows on the target would go with it: drop it there yourself once they are not needed",
                )
            )
    return missing, found + _schema_objects(source, target)


def _whole(name: str, what: str, statement: str, kind: str) -> Difference:
    """A difference of ``name`` fixed by one statement that may hold "; " itself (a function's body, a view's
    query)."""
    return Difference(name, what, statement, kind, steps=(statement,))


def _view(v: dict[str, Any]) -> str:
    query = v["definition"].strip().rstrip(";")
    if v["materialized"]:  # its rows come from D-day's refresh, as with the schema copy's
        return f"CREATE MATERIALIZED VIEW {v['qualified']} AS {query} WITH NO DATA"
    return f"CREATE OR REPLACE VIEW {v['qualified']} AS {query}"


def _schema_objects(source: Shape, target: Shape) -> list[Difference]:
    """Extensions, functions and views of the plan's schemas: missing on the target, defined otherwise, or only
    there."""
    found = [
        Difference(
            "",
            f"extension {name} (in schema {e['schema']}): missing on the target",
            f'CREATE EXTENSION IF NOT EXISTS "{name}" SCHEMA "{e["schema"]}"',
            "extension",
        )
        for name, e in sorted(source.extensions.items())
        if name not in target.extensions
    ]
    for signature, f in sorted(source.functions.items()):
        there = target.functions.get(signature)
        if there is None or there["definition"] != f["definition"]:
            state = "missing on the target" if there is None else "defined otherwise on the target"
            found.append(
                _whole(signature, f"{f['kind'].lower()} {signature}: {state}", f["definition"].strip(), "function")
            )
    for signature, f in sorted(target.functions.items()):
        if signature not in source.functions:
            drop = f"DROP {f['kind']} {signature}"
            found.append(
                Difference(signature, f"{f['kind'].lower()} {signature}: only on the target", drop, "drop function")
            )
    for name, v in sorted(source.views.items()):
        there = target.views.get(name)
        kind = "materialized view" if v["materialized"] else "view"
        if there is None:
            found.append(_whole(name, f"{kind} {name}: missing on the target", _view(v), "view"))
        elif there["definition"] != v["definition"] or there["materialized"] != v["materialized"]:
            statements: tuple[str, ...] = (_view(v),)
            if v["materialized"] or there["materialized"]:
                statements = (f"DROP {'MATERIALIZED VIEW' if there['materialized'] else 'VIEW'} {name}", _view(v))
            found.append(
                Difference(
                    "",
                    f"{kind} {name}: defined otherwise on the target",
                    "; ".join(statements),
                    "view",
                    steps=statements,
                )
            )
    for name, v in sorted(target.views.items()):
        if name not in source.views:
            kind = "MATERIALIZED VIEW" if v["materialized"] else "VIEW"
            found.append(
                Difference(name, f"{kind.lower()} {name}: only on the target", f"DROP {kind} {name}", "drop view")
            )
    return found


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _add_partition(
    name: str, table: str, partition: str, bounds: str, default: str | None, columns: list[dict[str, Any]]
) -> Difference:
    """A partition the target lacks. Without a default partition there, the rows of its bounds stop the
    subscription's apply until it exists. With one, they went there meanwhile, and PostgreSQL refuses to create
    the partition while the default holds rows of its bounds: in one transaction the default is detached, the
    partition created, those rows moved into it through the root (the partition's own constraint selects them)
    and the default attached again."""
    create = f"CREATE TABLE {partition} PARTITION OF {table} {bounds}"
    if default is None:
        return Difference(
            table,
            f"{name}: partition {partition} ({bounds}) has no partition of the same bounds on the target: its rows "
            "stop the subscription's apply",
            create,
            "partition",
            stops_apply=True,
        )
    names = ", ".join(c["quoted"] for c in columns if not c["generated"])
    # Names read from the catalogs, quoted by quote_ident, and as literals here.
    move = (
        "DO $ferry$BEGIN EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %s RETURNING %s) "  # noqa: S608
        "INSERT INTO %s (%s) SELECT %s FROM moved', "
        f"{_literal(default)}, pg_get_partition_constraintdef({_literal(partition)}::regclass), {_literal(names)}, "
        f"{_literal(table)}, {_literal(names)}, {_literal(names)}); END$ferry$"
    )
    steps = (
        "BEGIN",
        f"ALTER TABLE {table} DETACH PARTITION {default}",
        create,
        move,
        f"ALTER TABLE {table} ATTACH PARTITION {default} DEFAULT",
        "COMMIT",
    )
    return Difference(
        table,
        f"{name}: partition {partition} ({bounds}) has no partition of the same bounds on the target: its rows go to "
        f"the default partition {default} there meanwhile",
        "; ".join(steps),
        "partition",
        steps=steps,
    )
