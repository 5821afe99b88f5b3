"""The old side's connection pooler: Debian's PgBouncer on a loopback port, in front of the source, as it runs on
the application's VM. The old app's path to its database (the old app and the write load, the ``saas-worker`` unit,
write through it). Transaction pooling; SSL to the source; its admin console for Ferry's login ``ferry_pooler``.
The new side's (``NewPgBouncer``, in front of the target, as the new app's PgBouncer deployment on EKS) is the same
program on its own port; the new app reaches the target through it.

Its configuration file is in the stand's folder (``$FERRY_STAND_DIR/pgbouncer/pgbouncer.ini``), which Ferry edits
over the stand's SSH "VM" for the switch at the pooler. PgBouncer refuses to run as root: it runs as ``postgres``.
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path

import psycopg

from stand.core import Stand, conn_json, wait_for_port
from stand.seeding import APP_ROLE, DATABASE

PORT_OFFSET = 19
CONN_ID = "old_pooler"
ADMIN = "ferry_pooler"
SOURCE_OFFSET = 1  # stand.services.postgres.CLUSTERS["source"]


def binary() -> str:
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(found).exists():
        raise RuntimeError("pgbouncer is not installed: make apt installs Debian's pgbouncer")
    return found


class PgBouncer:
    name = "pgbouncer"
    folder_name = "pgbouncer"
    port_offset = PORT_OFFSET
    server_offset = SOURCE_OFFSET
    conn_id: str | None = CONN_ID

    def folder(self, stand: Stand) -> Path:
        return stand.dir / self.folder_name

    def config(self, stand: Stand) -> Path:
        return self.folder(stand) / "pgbouncer.ini"

    def entry(self, stand: Stand) -> str:
        """The app's entry, pointing at its side's database (the old app's: the source)."""
        return f"{DATABASE} = host=127.0.0.1 port={stand.port(self.server_offset)} dbname={DATABASE}\n"

    def write_config(self, stand: Stand) -> None:
        folder = self.folder(stand)
        folder.mkdir(exist_ok=True)
        users = folder / "userlist.txt"
        users.write_text(f'"{APP_ROLE}" "{stand.secret("app_role")}"\n"{ADMIN}" "{stand.secret("pooler_admin")}"\n')
        self.config(stand).write_text(
            "[databases]\n" + self.entry(stand) + "\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {stand.port(self.port_offset)}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {users}\nadmin_users = {ADMIN}\n"
            "pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 20\n"
            "server_tls_sslmode = require\nignore_startup_parameters = extra_float_digits\n"
            f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
        )
        postgres = pwd.getpwnam("postgres")
        for path in (folder, users, self.config(stand)):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
        users.chmod(0o600)

    def up(self, stand: Stand) -> None:
        if self.healthy(stand):
            return
        self.write_config(stand)
        stand.start_process(self.name, [binary(), "-u", "postgres", str(self.config(stand))])
        wait_for_port(stand.port(self.port_offset), what=self.name)

    def admin(self, stand: Stand) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=stand.port(self.port_offset),
            user=ADMIN,
            password=stand.secret("pooler_admin"),
            dbname="pgbouncer",
            autocommit=True,
            prepare_threshold=None,
            sslmode="disable",
        )

    def reset(self, stand: Stand) -> None:
        """Back as the stand starts it: the entry on the source, resumed (after a test's D-day switched it)."""
        self.write_config(stand)
        with self.admin(stand) as conn:
            conn.execute("RELOAD")
            cur = conn.execute("SHOW DATABASES")
            cols = [c.name for c in cur.description]
            rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
            if any(r["name"] == DATABASE and int(r.get("paused") or 0) for r in rows):
                conn.execute(f"RESUME {DATABASE}")

    def healthy(self, stand: Stand) -> bool:
        if not stand.process_alive(self.name):
            return False
        try:
            with self.admin(stand) as conn:
                conn.execute("SHOW VERSION")
            return True
        except psycopg.Error:
            return False

    def dsn(self, stand: Stand) -> str:
        """The app's connection string: through the pooler, as the application role."""
        return (
            f"host=127.0.0.1 port={stand.port(self.port_offset)} dbname={DATABASE} user={APP_ROLE} "
            f"password={stand.secret('app_role')} sslmode=disable"
        )

    def env(self, stand: Stand) -> dict[str, str]:
        if self.conn_id is None:
            return {}
        return {
            f"AIRFLOW_CONN_{self.conn_id.upper()}": conn_json(
                conn_type="postgres",
                host="127.0.0.1",
                port=stand.port(self.port_offset),
                login=ADMIN,
                password=stand.secret("pooler_admin"),
                schema="pgbouncer",
                extra={"sslmode": "disable"},
            )
        }

    def down(self, stand: Stand) -> None:
        stand.stop_process(self.name)


class NewPgBouncer(PgBouncer):
    """The new app's PgBouncer, in front of the target (on EKS, a PgBouncer deployment beside the app). Ferry does
    not drive it (no Airflow connection): the new app reaches the target through it, as the users' requests do once
    DNS sends them to the new app."""

    name = "pgbouncer_new"
    folder_name = "pgbouncer-new"
    port_offset = 20
    server_offset = 2  # stand.services.postgres.CLUSTERS["target"]
    conn_id = None
