"""PostgreSQL over ``PostgresHook``: every statement comes from ``include/sql/``, and the client programs
(``pg_dump``, ``psql``) run here, never in an operator."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Generator
from contextlib import closing, contextmanager
from functools import cache
from pathlib import Path
from typing import Any, Literal

import psycopg
from airflow.providers.postgres.hooks.postgres import PostgresHook
from airflow.sdk import BaseHook
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from ferry.paths import SQL_DIR
from ferry.plan import Plan

PG_LIB = Path("/usr/lib/postgresql")
KEPT_IDLE_S = 5.0


@cache
def load_sql(name: str) -> str:
    """The text of ``include/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


# Extras that say where a subscriber's server finds a file (its CA bundle), which differs from where Airflow's
# worker finds it: used in a subscription's connection string in place of the libpq keyword they name.
SUBSCRIBER_EXTRAS = {"subscriber_sslrootcert": "sslrootcert"}
# Taken from the connection's own fields, never from its extras.
CONNECTION_FIELDS = {"host", "hostaddr", "port", "user", "password", "dbname"}


@cache
def libpq_keywords() -> dict[str, str | None]:
    """Every connection keyword this libpq knows, with its environment variable (``sslmode``: ``PGSSLMODE``)."""
    return {
        o.keyword.decode(): o.envvar.decode() if o.envvar else None
        for o in pq.Conninfo.get_defaults()
        if o.keyword is not None
    }


def libpq_params(connection: Any, database: str | None = None, **overrides: Any) -> dict[str, str]:
    """The libpq keywords of an Airflow Postgres connection: its host, port, login, password and database
    (``database`` when given), and every extra that libpq knows (``sslmode``, ``sslrootcert``, ``sslcert``,
    ``sslkey``, ``target_session_attrs``...), then ``overrides``. The one way Ferry reaches a Postgres server:
    hooks, triggers, client programs and subscriptions alike."""
    known = libpq_keywords()
    params: dict[str, Any] = {
        "host": connection.host,
        "port": connection.port or 5432,
        "user": connection.login,
        "password": connection.password,
        "dbname": database or connection.schema,
    }
    params |= {k: v for k, v in connection.extra_dejson.items() if k in known and k not in CONNECTION_FIELDS}
    params |= overrides
    return {k: str(v) for k, v in params.items() if v not in (None, "")}


def conninfo(connection: Any, database: str | None = None, **overrides: Any) -> str:
    """:func:`libpq_params` as one connection string (it holds the password: never log it)."""
    return make_conninfo(**libpq_params(connection, database, **overrides))


def subscription_conninfo(publisher: Any, database: str, application_name: str, **overrides: Any) -> str:
    """The connection string a subscription reaches its publisher with: :func:`libpq_params` of the publisher's
    Airflow connection, SSL settings included, with the subscriber's own paths (``subscriber_sslrootcert``) where
    the connection gives them. It holds the password (a subscription owned by a login that is not a superuser
    must have one): it goes only into the subscriber's catalog, never a log, XCom or the ledger."""
    extras = publisher.extra_dejson
    own_paths = {keyword: extras[extra] for extra, keyword in SUBSCRIBER_EXTRAS.items() if extras.get(extra)}
    return conninfo(publisher, database, application_name=application_name, **own_paths | overrides)


class ClientProgramError(RuntimeError):
    """A PostgreSQL client program (pg_dump, psql) failed; the message ends with its stderr."""


class FerryPostgresHook(PostgresHook):
    """A Postgres connection for Ferry; every statement runs under a statement timeout.

    :param postgres_conn_id: the Airflow connection of the server.
    :param database: the database to connect to (overrides the connection's schema).
    :param statement_timeout_s: the longest any one statement may run.
    """

    def __init__(self, postgres_conn_id: str, database: str | None = None, statement_timeout_s: int = 60) -> None:
        super().__init__(
            postgres_conn_id=postgres_conn_id,
            database=database,
            options=f"-c statement_timeout={statement_timeout_s * 1000} -c application_name=ferry",
        )
        self.database = database
        self._kept: psycopg.Connection | None = None
        self._kept_used = 0.0

    def get_conn(self) -> psycopg.Connection:
        """A connection as :func:`libpq_params` describes it (SSL settings and every libpq extra honoured)."""
        self.conn = self._create_connection(libpq_params(self.connection, self.database, options=self.options))
        return self.conn

    @classmethod
    def for_side(cls, plan: Plan, side: Literal["source", "target"]) -> Any:
        """The hook of the plan's source or target database, with the plan's statement timeout."""
        where = plan.source if side == "source" else plan.target
        return cls(where.conn_id, where.database, plan.thresholds.statement_timeout_s)

    @contextmanager
    def session(self, *, autocommit: bool = True) -> Generator[psycopg.Connection, None, None]:
        """A connection of its own, closed afterwards (autocommit unless asked otherwise)."""
        with closing(self.get_conn()) as conn:
            conn.autocommit = autocommit
            yield conn

    def kept(self) -> psycopg.Connection:
        """The hook's own autocommit session, opened on first use and shared by :meth:`fetch` and
        :meth:`run_template` for the hook's life: a new session costs a TLS handshake and a SCRAM exchange (about
        10 ms each side, tens of them per task, inside the write freeze too). Checked with a ``SELECT 1`` after
        ``KEPT_IDLE_S`` unused (a server restarted, a session ended by an administrator) and opened again when
        closed or broken. Nothing here sets session state on it; server-side prepared statements are off."""
        kept = self._kept
        if kept is not None and not (kept.closed or kept.broken) and time.monotonic() - self._kept_used > KEPT_IDLE_S:
            try:
                kept.execute("SELECT 1")
            except psycopg.Error:
                kept.close()
        if kept is None or kept.closed or kept.broken:
            kept = self._kept = self.get_conn()
            kept.autocommit = True
            kept.prepare_threshold = None
        self._kept_used = time.monotonic()
        return kept

    def close(self) -> None:
        """Close the hook's own session, if open (it is also closed with the hook)."""
        if self._kept is not None:
            self._kept.close()
            self._kept = None

    def fetch(self, name: str, **parameters: Any) -> list[dict[str, Any]]:
        """Run the named SQL file with ``parameters`` (in the hook's own session) and return its rows as dicts."""
        with self.kept().cursor(row_factory=dict_row) as cur:
            cur.execute(load_sql(name), parameters or None)
            return cur.fetchall()

    def fetch_one(self, name: str, **parameters: Any) -> dict[str, Any] | None:
        """The first row of the named SQL file, or None."""
        rows = self.fetch(name, **parameters)
        return rows[0] if rows else None

    def run_template(
        self,
        name: str,
        identifiers: dict[str, sql.Composable] | None = None,
        conn: psycopg.Connection | None = None,
        **parameters: Any,
    ) -> list[dict[str, Any]]:
        """Run the named SQL template, its ``{placeholders}`` filled with ``identifiers``; return any rows.

        Runs in ``conn`` when given, else in the hook's own session, with autocommit (DDL such as
        ``CREATE SUBSCRIPTION`` cannot run inside a transaction block).
        """
        statement = sql.SQL(load_sql(name)).format(**(identifiers or {}))
        with (conn or self.kept()).cursor(row_factory=dict_row) as cur:
            cur.execute(statement, parameters or None)
            return cur.fetchall() if cur.description else []

    # Catalog ------------------------------------------------------------------------------

    def get_tables(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Tables of ``schemas`` with their primary key and replica identity."""
        return self.fetch("tables", schemas=schemas)

    def get_columns(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Columns of the tables of ``schemas`` with their exact types."""
        return self.fetch("columns", schemas=schemas)

    def count_rows(self, table: str) -> int:
        """Exact row count of ``table`` (a quoted, schema-qualified name)."""
        return self.run_template("table_count", {"table": sql.SQL(table)})[0]["rows"]

    def has_rows(self, table: str) -> bool:
        """Whether ``table`` (a quoted, schema-qualified name) holds any row."""
        return self.run_template("table_has_rows", {"table": sql.SQL(table)})[0]["has_rows"]

    def present_tables(self, tables: list[str]) -> list[str]:
        """Those of ``tables`` (quoted, schema-qualified names) that exist, in the order given."""
        return [r["table"] for r in self.fetch("tables_present", tables=tables)]

    def drop_tables(self, tables: list[str]) -> None:
        """Drop ``tables`` (quoted, schema-qualified names) and what depends on them."""
        self.run_template("tables_drop", {"tables": sql.SQL(", ").join(sql.SQL(t) for t in tables)})

    def database_size(self) -> int:
        """The database's size in bytes."""
        return self.fetch("database_size")[0]["bytes"]

    def get_current_lsn(self) -> str:
        """The server's current WAL position."""
        return self.fetch("current_lsn")[0]["lsn"]

    def get_unlogged_tables(self, schemas: list[str]) -> list[str]:
        """Unlogged tables of ``schemas`` (logical replication cannot carry them)."""
        return [r["table"] for r in self.fetch("unlogged_tables", schemas=schemas)]

    def get_materialized_views(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Materialized views of ``schemas`` (``view``, ``populated``)."""
        return self.fetch("materialized_views", schemas=schemas)

    def get_partitions(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Every leaf partition of the partitioned tables of ``schemas`` (``root``, ``partition``, ``bounds``)."""
        return self.fetch("partitions", schemas=schemas)

    def get_extensions(self) -> dict[str, str]:
        """The extensions installed in this database, name to version (plpgsql left out)."""
        return {r["name"]: r["version"] for r in self.fetch("extensions")}

    def extensions_ddl(self, schemas: list[str]) -> str:
        """``CREATE EXTENSION IF NOT EXISTS`` for each extension installed in ``schemas`` (a schema dump of
        named schemas leaves them out), to run on the target before that dump."""
        return "".join(
            sql.SQL(load_sql("extension_create"))
            .format(name=sql.Identifier(r["name"]), schema=sql.Identifier(r["schema"]))
            .as_string(None)
            for r in self.fetch("extensions")
            if r["schema"] in schemas
        )

    def get_extension_versions(self) -> dict[str, list[str]]:
        """Every extension this server can install, name to its versions."""
        found: dict[str, list[str]] = {}
        for r in self.fetch("extension_versions"):
            found.setdefault(r["name"], []).append(r["version"])
        return found

    def get_extension_columns(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Columns of ``schemas``' tables whose type an extension provides."""
        return self.fetch("extension_columns", schemas=schemas)

    # Large objects ------------------------------------------------------------------------

    def get_large_objects(self) -> list[dict[str, Any]]:
        """Every large object of the database (``oid``, ``owner``)."""
        return self.fetch("large_objects")

    def large_object_digests(self) -> dict[int, dict[str, str]]:
        """Every large object: its oid to its ``owner`` and the ``md5`` of its contents."""
        return {r["oid"]: r for r in self.fetch("large_object_digests")}

    def read_large_object(self, oid: int, conn: psycopg.Connection) -> bytes:
        return self.run_template("large_object_read", conn=conn, oid=oid)[0]["data"]

    def write_large_object(self, oid: int, data: bytes, owner: str, conn: psycopg.Connection) -> None:
        """Create (or replace) large object ``oid`` with ``data``, owned by ``owner``, in ``conn``'s transaction."""
        self.run_template("large_object_unlink", conn=conn, oid=oid)
        self.run_template("large_object_create", conn=conn, oid=oid, data=data)
        self.run_template("large_object_owner", {"oid": sql.Literal(oid), "owner": sql.Identifier(owner)}, conn)

    def unlink_large_object(self, oid: int) -> None:
        self.run_template("large_object_unlink", oid=oid)

    def refresh_materialized_view(self, view: str) -> None:
        """``REFRESH MATERIALIZED VIEW`` of ``view`` (a quoted, schema-qualified name)."""
        self.run_template("matview_refresh", {"view": sql.SQL(view)})

    # Sequences ----------------------------------------------------------------------------

    def get_sequences(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Sequences of ``schemas``, their owning column if any and their last value."""
        return self.fetch("sequences", schemas=schemas)

    def set_sequence_value(self, sequence: str, value: int) -> int:
        """Make ``sequence``'s next value ``value + increment``."""
        return self.fetch("sequence_setval", sequence=sequence, value=value)[0]["value"]

    def set_sequence_values(self, values: dict[str, int]) -> None:
        """:meth:`set_sequence_value` for each sequence (quoted name) of ``values``, in one transaction."""
        with self.session(autocommit=False) as conn:
            for sequence, value in values.items():
                self.run_template("sequence_setval", conn=conn, sequence=sequence, value=value)
            conn.commit()

    def column_maxima(self, columns: list[dict[str, str]]) -> list[Any]:
        """The largest value of each of ``columns`` (quoted ``table`` and ``column``), over one connection."""
        with self.session() as conn:
            return [
                self.run_template("column_max", {"table": sql.SQL(c["table"]), "column": sql.SQL(c["column"])}, conn)[
                    0
                ]["maximum"]
                for c in columns
            ]

    def last_handed_out(self, sequence: dict[str, Any]) -> int | None:
        """The last value ``sequence`` (a row of :meth:`get_sequences`) handed out, or the one before its next
        when it was never called (never used, or ``setval(..., false)``), read from the sequence itself: the
        value to set the other side's past. None when it cannot be read."""
        if sequence["last_value"] is not None:
            return sequence["last_value"]
        rows = self.run_template("sequence_state", {"sequence": sql.SQL(sequence["qualified"])})
        if not rows or rows[0]["last_value"] is None:
            return None
        state = rows[0]
        return state["last_value"] if state["is_called"] else state["last_value"] - sequence["increment_by"]

    def get_sequence_columns(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Integer columns fed by a sequence, with the sequence behind each."""
        return self.fetch("sequence_columns", schemas=schemas)

    # Client programs ----------------------------------------------------------------------

    def libpq_env(self) -> dict[str, str]:
        """libpq environment for this connection (:func:`libpq_params`, SSL included): the password travels in
        PGPASSWORD, never on a command line."""
        params = libpq_params(BaseHook.get_connection(self.postgres_conn_id), self.database, connect_timeout=10)
        env_names = libpq_keywords()
        return {env_names[k]: v for k, v in params.items() if env_names.get(k)}

    def server_version_num(self) -> int:
        return self.fetch("replication_settings")[0]["server_version_num"]

    def dump_schema(self, schemas: list[str], tables: list[str] | None = None) -> str:
        """``pg_dump --schema-only`` of ``schemas``, or of only ``tables`` (quoted, schema-qualified) with
        what belongs to them (no owners, publications or subscriptions), by a pg_dump of at least this
        server's major version."""
        args = (
            [arg for t in tables for arg in ("--table", t)] if tables else [a for s in schemas for a in ("--schema", s)]
        )
        return self._client(
            "pg_dump", ["--schema-only", "--no-owner", "--no-publications", "--no-subscriptions", *args], None
        )

    def restore_schema(self, ddl: str, server_version_num: int) -> None:
        """Apply ``ddl`` (a schema dump) in one transaction with ``psql`` of at least ``server_version_num``'s major."""
        self._client("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"], ddl, server_version_num)

    def _client(self, program: str, args: list[str], stdin: str | None, version: int | None = None) -> str:
        done = subprocess.run(
            [str(pg_bin(program, version or self.server_version_num())), *args],
            input=stdin,
            env=os.environ | self.libpq_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise ClientProgramError(f"{program} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done.stdout


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
    raise ClientProgramError(
        f"no {program} of major version {server_version_num // 10000} or newer; install postgresql-client-"
        f"{server_version_num // 10000} (or set FERRY_PG_BIN to its bin folder)"
    )
