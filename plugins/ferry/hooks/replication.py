"""Postgres logical replication over ``PostgresHook``: every statement comes from ``include/sql/``."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from contextlib import closing, contextmanager
from functools import cache
from typing import Any

import psycopg
from airflow.providers.postgres.hooks.postgres import PostgresHook
from psycopg import sql
from psycopg.rows import dict_row

from ferry.paths import SQL_DIR


@cache
def load_sql(name: str) -> str:
    """The text of ``include/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


class FenceBlocked(RuntimeError):
    """Other transactions kept the fence from being installed or removed; nothing changed."""


class ReplicationHook(PostgresHook):
    """A Postgres connection for replication work; every statement runs under a statement timeout.

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

    @contextmanager
    def session(self, *, autocommit: bool = True) -> Generator[psycopg.Connection, None, None]:
        """A connection of its own, closed afterwards (autocommit unless asked otherwise)."""
        with closing(self.get_conn()) as conn:
            conn.autocommit = autocommit
            yield conn

    def fetch(self, name: str, **parameters: Any) -> list[dict[str, Any]]:
        """Run the named SQL file with ``parameters`` and return its rows as dicts."""
        with closing(self.get_conn()) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(load_sql(name), parameters or None)
            return cur.fetchall()

    def execute(
        self,
        name: str,
        identifiers: dict[str, sql.Composable] | None = None,
        conn: psycopg.Connection | None = None,
        **parameters: Any,
    ) -> list[dict[str, Any]]:
        """Run the named SQL template, its ``{placeholders}`` filled with ``identifiers``; return any rows.

        Runs in ``conn`` when given, else in a connection of its own with autocommit (DDL such as
        ``CREATE SUBSCRIPTION`` cannot run inside a transaction block).
        """
        statement = sql.SQL(load_sql(name)).format(**(identifiers or {}))
        if conn is None:
            with self.session() as own:
                return self.execute(name, identifiers, own, **parameters)
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(statement, parameters or None)
            return cur.fetchall() if cur.description else []

    def fetch_one(self, name: str, **parameters: Any) -> dict[str, Any] | None:
        """The first row of the named SQL file, or None."""
        rows = self.fetch(name, **parameters)
        return rows[0] if rows else None

    def get_replication_settings(self) -> dict[str, Any]:
        """``wal_level`` and the slot and WAL sender headroom of a publisher."""
        return self.fetch("replication_settings")[0]

    def get_tables(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Tables of ``schemas`` with their primary key and replica identity."""
        return self.fetch("tables", schemas=schemas)

    def get_columns(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Columns of the tables of ``schemas`` with their exact types."""
        return self.fetch("columns", schemas=schemas)

    def get_sequences(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Sequences of ``schemas``, their owning column if any and their last value."""
        return self.fetch("sequences", schemas=schemas)

    def get_subscription_status(self, subscription: str) -> dict[str, Any] | None:
        """The subscription's state on this subscriber, or None when it does not exist."""
        return self.fetch_one("subscription_status", subscription=subscription)

    def get_slot_status(self, slot_name: str) -> dict[str, Any] | None:
        """Lag and retained WAL of a replication slot on this publisher, or None when it does not exist."""
        return self.fetch_one("slot_status", slot_name=slot_name)

    def count_rows(self, table: str) -> int:
        """Exact row count of ``table`` (a quoted, schema-qualified name)."""
        return self.execute("table_count", {"table": sql.SQL(table)})[0]["rows"]

    def get_current_lsn(self) -> str:
        """The publisher's current WAL position."""
        return self.fetch("current_lsn")[0]["lsn"]

    # Publication (on the source) -----------------------------------------------------------

    def get_publication_tables(self, publication: str) -> list[str] | None:
        """The quoted names of the tables ``publication`` publishes, or None when it does not exist."""
        row = self.fetch_one("publication_tables", publication=publication)
        return None if row is None else sorted(row["tables"])

    def create_publication(self, publication: str, tables: list[str]) -> str:
        """Publish exactly ``tables`` (quoted names); return what was done: created, altered or unchanged."""
        names = {"publication": sql.Identifier(publication), "tables": _table_list(tables)}
        current = self.get_publication_tables(publication)
        if current is None:
            self.execute("publication_create", names)
            return "created"
        if current != sorted(tables):
            self.execute("publication_set_tables", names)
            return "altered"
        return "unchanged"

    def drop_publication(self, publication: str) -> bool:
        """Drop ``publication``; False when it did not exist."""
        existed = self.get_publication_tables(publication) is not None
        self.execute("publication_drop", {"publication": sql.Identifier(publication)})
        return existed

    def drop_slot(self, slot_name: str) -> bool:
        """Drop an inactive replication slot; False when there was none."""
        return bool(self.fetch("slot_drop", slot_name=slot_name))

    # Subscription (on the target) ----------------------------------------------------------

    def create_subscription(self, subscription: str, publication: str, conninfo: str) -> bool:
        """Subscribe to ``publication`` (copying existing rows first); False when it already exists."""
        if self.get_subscription_status(subscription) is not None:
            return False
        names = {
            "subscription": sql.Identifier(subscription),
            "publication": sql.Identifier(publication),
            "conninfo": sql.Literal(conninfo),
            "slot_name": sql.Literal(subscription),
        }
        self.execute("subscription_create", names)
        return True

    def get_subscription_tables(self, subscription: str) -> list[dict[str, Any]]:
        """Each subscribed table and its state (``r`` once its initial copy is done)."""
        return self.fetch("subscription_tables", subscription=subscription)

    def refresh_subscription(self, subscription: str) -> None:
        """Pick up tables added to the publication since the subscription was created."""
        self.execute("subscription_refresh", {"subscription": sql.Identifier(subscription)})

    def drop_subscription(self, subscription: str, publisher_reachable: bool) -> bool:
        """Drop ``subscription``; when the publisher is unreachable, detach its slot first.

        Returns False when it did not exist. A detached slot stays on the publisher until
        :meth:`drop_slot` is called there.
        """
        if self.get_subscription_status(subscription) is None:
            return False
        names = {"subscription": sql.Identifier(subscription)}
        if not publisher_reachable:
            self.execute("subscription_disable", names)
            self.execute("subscription_detach_slot", names)
        self.execute("subscription_drop", names)
        return True

    # Write fence (on the source) -----------------------------------------------------------

    def get_fenced_tables(self) -> list[str]:
        """Tables carrying the fence's trigger."""
        return [r["table"] for r in self.fetch("fence_status")]

    def check_fence_roles(self, roles: list[str], schemas: list[str]) -> list[str]:
        """Why the fence could not hold each role that it cannot hold; empty when it can hold all."""
        found = {r["role"]: r for r in self.fetch("fence_roles", roles=roles, schemas=schemas)}
        problems = [f"role {role} does not exist on the source" for role in roles if role not in found]
        for role, row in found.items():
            if row["superuser"]:
                problems.append(f"role {role} is a superuser: it can bypass the fence; make it NOSUPERUSER")
            if row["owns"]:
                problems.append(
                    f"role {role} owns {', '.join(row['owns'])}: an owner can drop the fence's trigger; "
                    "transfer ownership (ALTER TABLE ... OWNER TO <migration role>)"
                )
        return problems

    def install_fence(
        self, tables: list[str], roles: list[str], lock_timeout_ms: int = 2000, attempts: int = 5
    ) -> None:
        """Refuse writes by ``roles`` to ``tables`` in one transaction, then end those roles' sessions.

        Creating the triggers waits for open writing transactions (they commit before the fence or
        not at all), so every write by the roles commits before the fence's WAL position or is refused.
        An application transaction that writes to two tables in scope can deadlock with the fence,
        and a long one can outlast ``lock_timeout_ms``; either way the fence's transaction rolls
        back whole (nothing is fenced) and is tried again, up to ``attempts`` times.
        """

        def install(conn: psycopg.Connection) -> None:
            self.execute("fence_function", conn=conn)
            fenced = {r["table"] for r in self.execute("fence_status", conn=conn)}
            role_args = sql.SQL(", ").join(sql.Literal(r) for r in roles)
            for table in tables:
                if table not in fenced:
                    self.execute("fence_trigger", {"table": sql.SQL(table), "roles": role_args}, conn)

        self._locking_transaction(
            "the fence was not installed", "nothing is fenced", install, lock_timeout_ms, attempts
        )
        self.terminate_sessions(roles)

    def remove_fence(self, lock_timeout_ms: int = 2000, attempts: int = 5) -> list[str]:
        """Drop the fence's triggers and function in one transaction; return the tables that were fenced.

        Dropping a trigger waits for every open transaction on its table, readers included; a reader
        of two tables can deadlock with it. Tried again as :meth:`install_fence` is.
        """

        def remove(conn: psycopg.Connection) -> list[str]:
            tables = [r["table"] for r in self.execute("fence_status", conn=conn)]
            for table in tables:
                self.execute("fence_trigger_drop", {"table": sql.SQL(table)}, conn)
            self.execute("fence_function_drop", conn=conn)
            return tables

        return self._locking_transaction(
            "the fence was not removed", "the source is still fenced", remove, lock_timeout_ms, attempts
        )

    def _locking_transaction(
        self,
        failed: str,
        state: str,
        body: Callable[[psycopg.Connection], Any],
        lock_timeout_ms: int,
        attempts: int,
    ) -> Any:
        """Run ``body`` in one transaction under ``lock_timeout_ms``; when it deadlocks with another
        transaction or a lock outlasts the timeout, it rolls back whole and is tried again."""
        for attempt in range(1, attempts + 1):
            try:
                with self.session(autocommit=False) as conn:
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
                    result = body(conn)
                    conn.commit()
                return result
            except (psycopg.errors.DeadlockDetected, psycopg.errors.LockNotAvailable) as err:
                why = (
                    "deadlock with an application transaction"
                    if isinstance(err, psycopg.errors.DeadlockDetected)
                    else f"a table stayed locked for over {lock_timeout_ms} ms"
                )
                if attempt == attempts:
                    raise FenceBlocked(
                        f"{failed} after {attempts} attempts: {why} each time; {state}. Find the long or "
                        "conflicting transactions in pg_stat_activity on the source, then re-run the task"
                    ) from err
                pause = 0.25 * attempt
                self.log.warning(
                    "Attempt %d of %d rolled back (%s); %s; trying again in %.2f s",
                    attempt,
                    attempts,
                    why,
                    state,
                    pause,
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # the loop returns or raises

    def terminate_sessions(self, roles: list[str]) -> list[dict[str, Any]]:
        """End every session of ``roles`` on this database."""
        return self.fetch("sessions_terminate", roles=roles)

    # Sequences -----------------------------------------------------------------------------

    def get_sequence_value(self, sequence: str) -> int | None:
        """The last value handed out by ``sequence`` (a quoted name), or None if never used."""
        row = self.execute("sequence_state", {"sequence": sql.SQL(sequence)})[0]
        return row["last_value"] if row["is_called"] else None

    def set_sequence_value(self, sequence: str, value: int) -> int:
        """Make ``sequence``'s next value ``value + increment``."""
        return self.fetch("sequence_setval", sequence=sequence, value=value)[0]["value"]

    def get_sequence_columns(self, schemas: list[str]) -> list[dict[str, Any]]:
        """Integer columns fed by a sequence, with the sequence behind each."""
        return self.fetch("sequence_columns", schemas=schemas)


def _table_list(tables: list[str]) -> sql.Composable:
    """Already-quoted table names (as ``pg_publication_tables`` and ``quote_ident`` give them) joined."""
    return sql.SQL(", ").join(sql.SQL(t) for t in tables)
