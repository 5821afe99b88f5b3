"""Source and target PostgreSQL 15 clusters from Debian's packages, run as the postgres user.

The source holds the sample SaaS schema and data and the application role; the target has an
empty database and the same role, as the new RDS instance would before the week-prior stage.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import psycopg

from stand.core import Stand, conn_json
from stand.seeding import APP_ROLE, DATABASE, ensure_role_and_database, seed_source

PG_BIN = Path(os.environ.get("FERRY_PG_BIN", "/usr/lib/postgresql/15/bin"))
CLUSTERS = {"source": 1, "target": 2}  # name: port offset


def _as_postgres(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, stdout=subprocess.DEVNULL)


class PostgresPair:
    name = "postgres"

    def data_dir(self, stand: Stand, cluster: str) -> Path:
        return stand.dir / "pg" / cluster

    def admin(self, stand: Stand, cluster: str, dbname: str = DATABASE) -> psycopg.Connection:
        """A superuser connection over the cluster's own unix socket."""
        return psycopg.connect(
            host=str(self.data_dir(stand, cluster)),
            port=stand.port(CLUSTERS[cluster]),
            user="postgres",
            dbname=dbname,
            autocommit=True,
        )

    def up(self, stand: Stand) -> None:
        pg = pwd.getpwnam("postgres")
        (stand.dir / "pg").mkdir(exist_ok=True)
        os.chown(stand.dir / "pg", pg.pw_uid, pg.pw_gid)
        os.chmod(stand.dir, 0o755)
        for cluster, offset in CLUSTERS.items():
            data = self.data_dir(stand, cluster)
            if not (data / "PG_VERSION").exists():
                pwfile = stand.dir / "pg" / f"{cluster}.pw"
                pwfile.write_text(stand.secret(f"{cluster}_superuser") + "\n")
                os.chown(pwfile, pg.pw_uid, pg.pw_gid)
                pwfile.chmod(0o600)
                _as_postgres(
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                )
                pwfile.unlink()
            if (
                subprocess.run(
                    ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "status"],
                    stdout=subprocess.DEVNULL,
                ).returncode
                != 0
            ):
                # fsync off: a throwaway stand on a shared machine; durability of the stand itself is not under test.
                _as_postgres(
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(data / "server.log"),
                    "-w",
                    "start",
                    "-o",
                    f"-p {stand.port(offset)} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data} "
                    "-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 "
                    "-c fsync=off -c full_page_writes=off -c max_connections=100",
                )
            with self.admin(stand, cluster, "postgres") as conn:
                ensure_role_and_database(conn, stand.secret("app_role"), reports_password=stand.secret("reports_role"))
        with self.admin(stand, "source") as conn:
            seed_source(conn, stand.rows)

    def healthy(self, stand: Stand) -> bool:
        try:
            for cluster in CLUSTERS:
                with self.admin(stand, cluster) as conn:
                    conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def env(self, stand: Stand, database: str = DATABASE) -> dict[str, str]:
        """The connections to both clusters, as superuser and as the application role, to ``database``."""
        env = {}
        for cluster, offset in CLUSTERS.items():
            env[f"AIRFLOW_CONN_FERRY_{cluster.upper()}"] = conn_json(
                conn_type="postgres",
                host="127.0.0.1",
                port=stand.port(offset),
                login="postgres",
                password=stand.secret(f"{cluster}_superuser"),
                schema=database,
            )
            env[f"AIRFLOW_CONN_FERRY_{cluster.upper()}_APP"] = conn_json(
                conn_type="postgres",
                host="127.0.0.1",
                port=stand.port(offset),
                login=APP_ROLE,
                password=stand.secret("app_role"),
                schema=database,
            )
        return env

    def down(self, stand: Stand) -> None:
        for cluster in CLUSTERS:
            data = self.data_dir(stand, cluster)
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    [
                        "runuser",
                        "-u",
                        "postgres",
                        "--",
                        str(PG_BIN / "pg_ctl"),
                        "-D",
                        str(data),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                    stdout=subprocess.DEVNULL,
                    check=False,
                )
