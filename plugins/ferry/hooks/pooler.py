"""The old side's PgBouncer: its admin console (PAUSE, RESUME, RELOAD, SHOW DATABASES) and its ``[databases]``
entry, edited over the VM's SSH connection. What D-day's switch at the pooler is made of.

The entry's line may hold a password (``password=``): it is read and written over SSH, never logged, never put in
the ledger or an exception; only its host, port and database are.
"""

from __future__ import annotations

import hashlib
import re
import select
import time
from typing import Any

import psycopg
from airflow.sdk import BaseHook
from psycopg import pq

from ferry.hooks.postgres import libpq_params
from ferry.hooks.vms import VmHook
from ferry.plan import Plan

# ``key=value`` pairs of an entry's connection string; a value may be single-quoted ('' inside for a quote).
_PAIR = re.compile(r"([A-Za-z_]+)\s*=\s*('(?:[^']|'')*'|[^\s']+)")
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


class PoolerError(RuntimeError):
    """PgBouncer refused or could not do what was asked; the message says what and what to do."""


def where(entry: dict[str, Any]) -> dict[str, Any]:
    """What the ledger and the logs may say of an entry: where it points, nothing else."""
    return {"host": entry.get("host"), "port": entry.get("port"), "dbname": entry.get("dbname")}


def repoint_line(line: str, host: str, port: int, dbname: str) -> str:
    """The ``[databases]`` line ``line`` pointed at ``host``:``port``/``dbname``, every other setting kept."""
    name, _, spec = line.partition("=")
    wanted = {"host": host, "port": str(port), "dbname": dbname}
    pairs = [(key, value) for key, value in _PAIR.findall(spec)]
    out = [(key, wanted.pop(key) if key in wanted else value) for key, value in pairs]
    out += list(wanted.items())
    return f"{name.rstrip()} = " + " ".join(f"{key}={value}" for key, value in out)


def repoint_config(text: str, database: str, host: str, port: int, dbname: str) -> str:
    """``text`` (a pgbouncer.ini) with ``database``'s entry of ``[databases]`` repointed; a PoolerError naming the
    entry when the file has none."""
    lines, section, found = text.splitlines(keepends=True), None, False
    for i, line in enumerate(lines):
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip().lower()
            continue
        key = line.partition("=")[0].strip().strip('"')
        if section == "databases" and "=" in line and key == database and not line.lstrip().startswith((";", "#")):
            ending = line[len(line.rstrip("\r\n")) :]
            lines[i] = repoint_line(line.rstrip("\r\n"), host, port, dbname) + ending
            found = True
    if not found:
        raise PoolerError(
            f"no [databases] entry {database} in the pooler's configuration file: set source.pooler.database to the "
            "entry the application connects through, and config_path to the file that holds it"
        )
    return "".join(lines)


class PoolerHook:
    """The plan's ``source.pooler``: its admin console (a Postgres connection to the ``pgbouncer`` database, simple
    query protocol) and its configuration file on the VM (``source.pooler.vm``'s SSH connection)."""

    def __init__(self, plan: Plan) -> None:
        if plan.source.pooler is None or plan.pooler_vm is None:
            raise ValueError("the plan declares no source.pooler")
        self.pooler, self.vm = plan.source.pooler, plan.pooler_vm
        self.database = self.pooler.database
        self._ssh: Any = None  # an SSH connection to the VM opened ahead (connect_vm), used once by repoint
        self._vm: VmHook | None = None
        self._config_ahead: str | None = None  # the file as connect_vm read it

    def vm_hook(self) -> VmHook:
        """The VM's SSH hook. Made in the task's own thread: it reads the Airflow connection (a call to the
        supervisor), which another thread must not make at the same time."""
        if self._vm is None:
            self._vm = VmHook(self.vm.ssh_conn_id)
        return self._vm

    def connect_vm(self, hook: VmHook | None = None) -> None:
        """Open the SSH connection the next :meth:`repoint` uses, ahead of time, and read the file over it: the
        handshake and the read then do not fall inside the users' pause (the repoint writes only if the file is
        still what was read). ``hook`` (from :meth:`vm_hook`) lets another thread do it: only SSH happens there."""
        if self._ssh is None:
            vm = hook or self.vm_hook()
            self._ssh = vm.get_conn()
            try:
                self._config_ahead = self.read_config(vm, self._ssh)
            except PoolerError:
                self._config_ahead = None  # the repoint reads it, and says why it cannot

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def admin(self) -> psycopg.Connection:
        """A session on PgBouncer's admin console."""
        conn = BaseHook.get_connection(self.pooler.admin_conn_id)
        params = libpq_params(conn, "pgbouncer", connect_timeout=10)
        return psycopg.connect(**params, autocommit=True, prepare_threshold=None)

    def _command(self, conn: psycopg.Connection, command: str) -> list[dict[str, Any]]:
        cur = conn.execute(command)
        if cur.description is None:
            return []
        names = [c.name for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def entry(self, conn: psycopg.Connection | None = None) -> dict[str, Any]:
        """The entry as PgBouncer runs it (``SHOW DATABASES``): ``host``, ``port``, ``dbname``, ``paused``. ``conn``:
        an admin session already open."""
        if conn is None:
            with self.admin() as conn:
                return self.entry(conn)
        rows = self._command(conn, "SHOW DATABASES")
        for row in rows:
            if row["name"] == self.database:
                return {
                    "host": row["host"],
                    "port": int(row["port"]) if row["port"] is not None else None,
                    "dbname": row["database"],
                    "paused": bool(int(row.get("paused") or 0)),
                    "disabled": bool(int(row.get("disabled") or 0)),
                }
        raise PoolerError(
            f"PgBouncer ({self.pooler.admin_conn_id}) has no database {self.database}: set source.pooler.database to "
            "the [databases] entry the application connects through"
        )

    def pause(self, timeout_s: float) -> float:
        """``PAUSE`` the entry: new queries wait in PgBouncer, none fails; returns once every transaction in flight
        ended and PgBouncer let go of its server connections (the seconds that took). Past ``timeout_s`` it
        resumes and raises: a client holds a transaction open."""
        started = time.monotonic()
        with self.admin() as conn:
            pg = conn.pgconn
            pg.send_query(f"PAUSE {self.database}".encode())
            pg.flush()
            while True:
                pg.consume_input()
                if not pg.is_busy():
                    break
                left = timeout_s - (time.monotonic() - started)
                if left <= 0:
                    self.resume()
                    raise PoolerError(
                        f"PgBouncer's PAUSE {self.database} did not finish within source.pooler.pause_timeout_s "
                        f"({timeout_s:g} s): a client holds a transaction open through the pooler (see SHOW SERVERS "
                        "on its admin console, or pg_stat_activity on the source). The pooler was resumed on the "
                        "source; end that transaction, or raise pause_timeout_s, and run D-day again"
                    )
                select.select([pg.socket], [], [], min(left, 0.2))
            error = None
            while (result := pg.get_result()) is not None:
                if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
                    error = (result.error_message or b"").decode(errors="replace").strip()
            if error:
                raise PoolerError(f"PgBouncer refused PAUSE {self.database}: {error}")
        return time.monotonic() - started

    def resume(self) -> None:
        """``RESUME`` the entry (nothing when it is not paused)."""
        with self.admin() as conn:
            paused = [r for r in self._command(conn, "SHOW DATABASES") if r["name"] == self.database]
            if paused and int(paused[0].get("paused") or 0):
                self._command(conn, f"RESUME {self.database}")

    def _shell_path(self) -> str:
        return f'"{self.pooler.config_path}"'  # double quotes: the VM's shell expands $VARIABLES, nothing else

    def _sudo(self) -> str:
        return "sudo -n " if self.pooler.sudo else ""

    def read_config(self, vm: VmHook, client: Any = None) -> str:
        status, out, err = vm.run_raw(f"{self._sudo()}cat -- {self._shell_path()}", client=client)
        if status != 0:
            raise PoolerError(
                f"could not read the pooler's configuration {self.pooler.config_path} on {self.vm.name} (exit "
                f"{status}: {err.strip()[:300]}): check source.pooler.config_path, and that the SSH login may read it "
                "(or set source.pooler.sudo)"
            )
        return out

    def repoint(self, host: str, port: int, dbname: str) -> None:
        """Point the entry at ``host``:``port``/``dbname`` in the configuration file (every other setting kept,
        written whole, then renamed over the old file: never half a file), ``RELOAD``, and verify PgBouncer runs
        it."""
        vm = self.vm_hook()
        path, new, sudo = self._shell_path(), f'"{self.pooler.config_path}.ferry-new"', self._sudo()
        command = f"{sudo}cp -p -- {path} {new} && {sudo}tee -- {new} >/dev/null && {sudo}mv -f -- {new} {path}"
        client, self._ssh = self._ssh or vm.get_conn(), None
        ahead, self._config_ahead = self._config_ahead, None
        with client:  # one SSH handshake for all (opened ahead by connect_vm, when it was)
            if ahead is not None:
                # Written only if the file is still what connect_vm read (else exit 75: read it again, then write).
                digest = hashlib.md5(ahead.encode(), usedforsecurity=False).hexdigest()
                guard = f'[ "$({sudo}md5sum -- {path} | cut -c1-32)" = "{digest}" ] || exit 75; '
                text = repoint_config(ahead, self.database, host, port, dbname)
                status, _, err = vm.run_raw(guard + command, stdin=text, client=client)
            if ahead is None or status == 75:
                text = repoint_config(self.read_config(vm, client), self.database, host, port, dbname)
                status, _, err = vm.run_raw(command, stdin=text, client=client)
        if status != 0:
            raise PoolerError(
                f"could not write the pooler's configuration {self.pooler.config_path} on {self.vm.name} (exit "
                f"{status}: {err.strip()[:300]}): the SSH login must be able to write it (or set source.pooler.sudo)"
            )
        with self.admin() as conn:  # one admin session for both
            self._command(conn, "RELOAD")
            running = self.entry(conn)
        if (running["host"], running["port"], running["dbname"]) != (host, port, dbname):
            raise PoolerError(
                f"PgBouncer still runs {self.database} against {where(running)} after RELOAD, not "
                f"{ {'host': host, 'port': port, 'dbname': dbname} }: read its log (a setting it refused?)"
            )
