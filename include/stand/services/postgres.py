"""Source and target PostgreSQL 15 clusters from Debian's packages, run as the postgres user.

The source holds the sample SaaS schema and data and the application role; the target has an
empty database and the same role, as the new RDS instance would before the week-prior stage.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from stand.core import Stand, conn_json

PG_BIN = Path(os.environ.get("FERRY_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "saas"
APP_ROLE = "saas_app"
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
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
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
                    conn.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                            sql.Identifier(APP_ROLE), sql.Literal(stand.secret("app_role"))
                        )
                    )
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                    conn.execute(f"CREATE DATABASE {DATABASE}")
        self.seed(stand)

    def seed(self, stand: Stand) -> None:
        """The sample schema and ``stand.rows`` rows in all on the source, once."""
        with self.admin(stand, "source") as conn:
            if conn.execute("SELECT to_regclass('public.customers')").fetchone()[0]:
                return
            started = time.monotonic()
            conn.execute((SQL_DIR / "schema.sql").read_text())
            n = stand.rows
            counts = {
                "customers": n // 10,
                "subscriptions": n * 15 // 100,
                "invoices": n * 35 // 100,
                "events": n * 30 // 100,
            }
            counts["page_views"] = n - sum(counts.values())
            conn.execute((SQL_DIR / "seed.sql").read_text().format(**counts))
            conn.execute("VACUUM ANALYZE")
            print(
                f"  seeded {n:,} rows on the source in {time.monotonic() - started:.1f} s: "
                + ", ".join(f"{t} {c:,}" for t, c in counts.items())
            )

    def healthy(self, stand: Stand) -> bool:
        try:
            for cluster in CLUSTERS:
                with self.admin(stand, cluster) as conn:
                    conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def env(self, stand: Stand) -> dict[str, str]:
        env = {}
        for cluster, offset in CLUSTERS.items():
            env[f"AIRFLOW_CONN_FERRY_{cluster.upper()}"] = conn_json(
                conn_type="postgres",
                host="127.0.0.1",
                port=stand.port(offset),
                login="postgres",
                password=stand.secret(f"{cluster}_superuser"),
                schema=DATABASE,
            )
            env[f"AIRFLOW_CONN_FERRY_{cluster.upper()}_APP"] = conn_json(
                conn_type="postgres",
                host="127.0.0.1",
                port=stand.port(offset),
                login=APP_ROLE,
                password=stand.secret("app_role"),
                schema=DATABASE,
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
