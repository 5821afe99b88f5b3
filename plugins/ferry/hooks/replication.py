"""Postgres logical replication over ``PostgresHook``: every statement comes from ``include/sql/``."""

from __future__ import annotations

from contextlib import closing
from functools import cache
from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook
from psycopg.rows import dict_row

from ferry.paths import SQL_DIR


@cache
def load_sql(name: str) -> str:
    """The text of ``include/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text()


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

    def fetch(self, name: str, **parameters: Any) -> list[dict[str, Any]]:
        """Run the named SQL file with ``parameters`` and return its rows as dicts."""
        with closing(self.get_conn()) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(load_sql(name), parameters or None)
            return cur.fetchall()

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
