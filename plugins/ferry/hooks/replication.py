"""Postgres logical replication and the write fence, over :class:`ferry.hooks.postgres.FerryPostgresHook`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from airflow.sdk import BaseHook
from psycopg import sql

from ferry.hooks.postgres import FerryPostgresHook
from ferry.plan import Plan


class FenceBlocked(RuntimeError):
    """Other transactions kept the fence from being installed or removed; nothing changed."""


class ReplicationHook(FerryPostgresHook):
    """A Postgres connection for replication work: publication, subscription, slots and the write fence.

    :param postgres_conn_id: the Airflow connection of the server.
    :param database: the database to connect to (overrides the connection's schema).
    :param statement_timeout_s: the longest any one statement may run.
    """

    def get_replication_settings(self) -> dict[str, Any]:
        """``wal_level`` and the slot and WAL sender headroom of a publisher."""
        return self.fetch("replication_settings")[0]

    def get_subscription_status(self, subscription: str) -> dict[str, Any] | None:
        """The subscription's state on this subscriber, or None when it does not exist."""
        return self.fetch_one("subscription_status", subscription=subscription)

    def get_slot_status(self, slot_name: str) -> dict[str, Any] | None:
        """Lag and retained WAL of a replication slot on this publisher, or None when it does not exist."""
        return self.fetch_one("slot_status", slot_name=slot_name)

    # Publication (on the source) -----------------------------------------------------------

    def get_publication_tables(self, publication: str) -> list[str] | None:
        """The quoted names of the tables ``publication`` publishes, or None when it does not exist."""
        row = self.fetch_one("publication_tables", publication=publication)
        return None if row is None else sorted(row["tables"])

    def publishes_via_root(self, publication: str) -> bool | None:
        """Whether ``publication`` publishes partitions through their root; None when it does not exist."""
        row = self.fetch_one("publication_tables", publication=publication)
        return None if row is None else row["via_root"]

    def create_publication(self, publication: str, tables: list[str]) -> str:
        """Publish exactly ``tables`` (quoted names); return what was done: created, altered or unchanged."""
        names = {"publication": sql.Identifier(publication), "tables": _table_list(tables)}
        current = self.get_publication_tables(publication)
        if current is None:
            self.run_template("publication_create", names)
            return "created"
        if current != sorted(tables) or not self.publishes_via_root(publication):
            self.run_template("publication_set_tables", names)
            return "altered"
        return "unchanged"

    def drop_publication(self, publication: str) -> bool:
        """Drop ``publication``; False when it did not exist."""
        existed = self.get_publication_tables(publication) is not None
        self.run_template("publication_drop", {"publication": sql.Identifier(publication)})
        return existed

    def get_slots(self, prefix: str) -> list[dict[str, Any]]:
        """The replication slots of this database whose name starts with ``prefix``, with the WAL each keeps."""
        return self.fetch("slots_of_prefix", prefix=prefix)

    def create_slot(self, slot_name: str) -> str | None:
        """Create a pgoutput slot (for a subscription); its consistent LSN, or None when it already existed."""
        if self.get_slot_status(slot_name) is not None:
            return None
        return self.fetch("slot_create", slot_name=slot_name)[0]["lsn"]

    def drop_slot(self, slot_name: str, wait_inactive_s: float = 10) -> bool:
        """Drop a replication slot once inactive; False when there is none, or it stays in use for
        ``wait_inactive_s`` (a walsender outlives its subscriber's disconnection by a moment: a subscription
        just disabled or dropped leaves its slot active for that long)."""
        deadline = time.monotonic() + wait_inactive_s
        while True:
            if self.fetch("slot_drop", slot_name=slot_name):
                return True
            if self.get_slot_status(slot_name) is None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    # Subscription (on the target) ----------------------------------------------------------

    def create_subscription(
        self, subscription: str, publication: str, conninfo: str, *, existing_slot: bool = False
    ) -> bool:
        """Subscribe to ``publication``; False when the subscription already exists.

        By default it creates its slot and copies existing rows first. With ``existing_slot``, it streams from
        the slot of its name already on the publisher and copies nothing (the reverse replication).
        """
        if self.get_subscription_status(subscription) is not None:
            return False
        names = {
            "subscription": sql.Identifier(subscription),
            "publication": sql.Identifier(publication),
            "conninfo": sql.Literal(conninfo),
            "slot_name": sql.Literal(subscription),
        }
        self.run_template("subscription_create_existing_slot" if existing_slot else "subscription_create", names)
        return True

    def probe_subscription(self, subscription: str, publication: str, conninfo: str) -> None:
        """Have this server connect to a publisher as a subscription with ``conninfo`` would, leaving nothing:
        ``CREATE SUBSCRIPTION`` without a slot, in a transaction rolled back. Raises what the server raised
        (``could not connect to the publisher: ...``) when it cannot."""
        names = {
            "subscription": sql.Identifier(subscription),
            "publication": sql.Identifier(publication),
            "conninfo": sql.Literal(conninfo),
        }
        with self.session(autocommit=False) as conn:
            try:
                self.run_template("subscription_probe", names, conn)
            finally:
                conn.rollback()

    def get_subscription_tables(self, subscription: str) -> list[dict[str, Any]]:
        """Each subscribed table and its state (``r`` once its initial copy is done)."""
        return self.fetch("subscription_tables", subscription=subscription)

    def refresh_subscription(self, subscription: str) -> None:
        """Pick up tables added to the publication since the subscription was created."""
        self.run_template("subscription_refresh", {"subscription": sql.Identifier(subscription)})

    def drop_subscription(self, subscription: str, publisher_reachable: bool) -> bool:
        """Drop ``subscription``; when the publisher is unreachable, detach its slot first.

        Returns False when it did not exist. A detached slot stays on the publisher until
        :meth:`drop_slot` is called there.
        """
        if self.get_subscription_status(subscription) is None:
            return False
        names = {"subscription": sql.Identifier(subscription)}
        if not publisher_reachable:
            self.run_template("subscription_disable", names)
            self.run_template("subscription_detach_slot", names)
        self.run_template("subscription_drop", names)
        return True

    # Write fence (on the source) -----------------------------------------------------------

    def get_fenced_tables(self) -> list[str]:
        """Tables carrying the fence's trigger."""
        return [r["table"] for r in self.fetch("fence_status")]

    def get_writers(self, tables: list[str]) -> list[dict[str, Any]]:
        """Every login role that can write one of ``tables``: ``role``, ``superuser``, ``owner``, the
        ``tables`` and ``via`` (where the right comes from: a grant, a role's grant, PUBLIC, ownership...)."""
        return self.fetch("writers", tables=tables)

    def missing_roles(self, roles: list[str]) -> list[str]:
        """Those of ``roles`` that do not exist on this server."""
        found = {r["role"] for r in self.fetch("roles_exist", roles=roles)}
        return [r for r in roles if r not in found]

    def install_fence(
        self, tables: list[str], allowed: list[str], lock_timeout_ms: int = 2000, attempts: int = 5
    ) -> list[str]:
        """Refuse writes to ``tables`` by every login role but ``allowed``, in one transaction, then end the
        sessions of every role (but superusers) that could write them; return those roles.

        Creating the triggers waits for open writing transactions (they commit before the fence or
        not at all), so every write by a fenced role commits before the fence's WAL position or is refused.
        An application transaction that writes to two tables in scope can deadlock with the fence,
        and a long one can outlast ``lock_timeout_ms``; either way the fence's transaction rolls
        back whole (nothing is fenced) and is tried again, up to ``attempts`` times.
        """

        def install(conn: psycopg.Connection) -> None:
            self.run_template("fence_function", conn=conn)
            fenced = {r["table"] for r in self.run_template("fence_status", conn=conn)}
            role_args = sql.SQL(", ").join(sql.Literal(r) for r in allowed)
            for table in tables:
                if table not in fenced:
                    self.run_template("fence_trigger", {"table": sql.SQL(table), "roles": role_args}, conn)

        self._locking_transaction(
            "the fence was not installed", "nothing is fenced", install, lock_timeout_ms, attempts
        )
        # A superuser's sessions are not Ferry's to end (only a superuser may); the pre-flight refuses every
        # superuser but the managed service's own.
        held = [w["role"] for w in self.get_writers(tables) if w["role"] not in allowed and not w["superuser"]]
        self.terminate_sessions(held)
        # Ferry's login may write past the fence: a client sharing it (not a session of Ferry's) is ended too.
        shared = self.sessions_sharing_login(terminate=True)
        if shared:
            self.log.warning(
                "Ended %d session(s) of Ferry's own login that are not Ferry's: %s",
                len(shared),
                "; ".join(
                    f"pid {s['pid']} ({s['application_name'] or 'no application_name'}, from "
                    f"{s['client_addr'] or 'a local socket'})"
                    for s in shared
                ),
            )
        return held

    def remove_fence(self, lock_timeout_ms: int = 2000, attempts: int = 5) -> list[str]:
        """Drop the fence's triggers and function in one transaction; return the tables that were fenced.

        Dropping a trigger waits for every open transaction on its table, readers included; a reader
        of two tables can deadlock with it. Tried again as :meth:`install_fence` is.
        """

        def remove(conn: psycopg.Connection) -> list[str]:
            tables = [r["table"] for r in self.run_template("fence_status", conn=conn)]
            for table in tables:
                self.run_template("fence_trigger_drop", {"table": sql.SQL(table)}, conn)
            self.run_template("fence_function_drop", conn=conn)
            return tables

        return self._locking_transaction(
            "the fence was not removed", "it is still in place", remove, lock_timeout_ms, attempts
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
                        "conflicting transactions in pg_stat_activity on that database, then re-run the task"
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

    def sessions_sharing_login(self, terminate: bool = False) -> list[dict[str, Any]]:
        """The sessions of Ferry's own login on this database that are not Ferry's (``pid``, ``application_name``,
        ``client_addr``, ``backend_start``, ``state``); with ``terminate``, ended."""
        return self.fetch("sessions_sharing_login", terminate=terminate)

    def terminate_sessions(self, roles: list[str]) -> list[dict[str, Any]]:
        """End every session of ``roles`` on this database."""
        return self.fetch("sessions_terminate", roles=roles)


def _table_list(tables: list[str]) -> sql.Composable:
    """Already-quoted table names (as ``pg_publication_tables`` and ``quote_ident`` give them) joined."""
    return sql.SQL(", ").join(sql.SQL(t) for t in tables)


def fence_problems(writers: list[dict[str, Any]], allowed: list[str], provider: list[str] = ()) -> list[str]:
    """Why the fence could not hold each of ``writers`` (from :meth:`ReplicationHook.get_writers`) other
    than ``allowed`` and the managed service's own superusers (``provider``), with the fix; empty when it can
    hold them all."""
    problems = []
    for w in writers:
        if w["role"] in allowed or (w["superuser"] and w["role"] in provider):
            continue
        if w["superuser"]:
            problems.append(
                f"role {w['role']} is a superuser: it can switch the fence off (session_replication_role, "
                f"ALTER TABLE ... DISABLE TRIGGER); make it NOSUPERUSER (ALTER ROLE {w['role']} NOSUPERUSER), "
                "or stop every client that logs in as it before D-day"
            )
        elif w["owner"]:
            owned = ", ".join(w["tables"][:5]) + (" ..." if len(w["tables"]) > 5 else "")
            problems.append(
                f"role {w['role']} owns {owned} ({', '.join(v for v in w['via'] if v.startswith('owner'))}): "
                "an owner can drop the fence's trigger; transfer ownership to Ferry's role "
                "(ALTER TABLE ... OWNER TO <migration role>)"
            )
    return problems


def source_login(plan: Plan) -> str:
    """Ferry's own login on the source (its Airflow connection's)."""
    return BaseHook.get_connection(plan.source.conn_id).login


def fence_allowed_roles(plan: Plan) -> list[str]:
    """The roles the fence lets write: Ferry's own (the source connection's login) and ``source.keep_writing``."""
    return sorted({source_login(plan), *plan.source.keep_writing})


def fenced_tables(plan: Plan, hook: ReplicationHook, scope: list[str]) -> list[str]:
    """The tables the fence guards: those in ``scope`` and every partition of them (a statement trigger on a
    partitioned table does not fire for a write aimed at one of its partitions)."""
    partitions = [p["partition"] for p in hook.get_partitions(plan.replication.schemas) if p["root"] in scope]
    return sorted({*scope, *partitions})
