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
from psycopg import sql

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
        for cluster, offset in CLUSTERS.items():
            start_cluster(stand, cluster, offset, LOGICAL)
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
            stop_cluster(stand, cluster)


class AirflowMetadata:
    """Airflow's own metadata database, in a cluster of its own (never the source or the target), as a
    production deployment keeps it: the deployment (``include/deployment.py``) migrates and uses it."""

    name = "airflow_metadata"
    cluster, offset, role = "airflow", 12, "airflow"

    def up(self, stand: Stand) -> None:
        start_cluster(stand, self.cluster, self.offset, "-c max_connections=200")
        with _admin(stand, self.cluster, "postgres") as conn:
            password = stand.secret("airflow_metadata")
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(self.role)))
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.role), sql.Literal(password)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.role,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.role), sql.Identifier(self.role))
                )

    def healthy(self, stand: Stand) -> bool:
        try:
            with _admin(stand, self.cluster, "airflow") as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def env(self, stand: Stand) -> dict[str, str]:
        # Not Airflow's own variable: the tests' and the rehearsal's ``airflow dags test`` keep their own
        # database; the deployment sets AIRFLOW__DATABASE__SQL_ALCHEMY_CONN from this for its processes.
        return {
            "FERRY_AIRFLOW_DB": f"postgresql+psycopg2://{self.role}:{stand.secret('airflow_metadata')}"
            f"@127.0.0.1:{stand.port(self.offset)}/{self.role}"
        }

    def restart(self, stand: Stand) -> None:
        """Stop the cluster (fast, as a crash would) and start it again: the deployment's crash drill."""
        stop_cluster(stand, self.cluster)
        start_cluster(stand, self.cluster, self.offset, "-c max_connections=200")

    def down(self, stand: Stand) -> None:
        stop_cluster(stand, self.cluster)


LOGICAL = "-c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10 -c max_connections=100"


def _data_dir(stand: Stand, cluster: str) -> Path:
    return stand.dir / "pg" / cluster


def _admin(stand: Stand, cluster: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=str(_data_dir(stand, cluster)), port=_port(stand, cluster), user="postgres", dbname=dbname, autocommit=True
    )


def _port(stand: Stand, cluster: str) -> int:
    return stand.port(CLUSTERS.get(cluster, AirflowMetadata.offset))


def start_cluster(stand: Stand, cluster: str, offset: int, options: str) -> None:
    """Create (once) and start a PostgreSQL 15 cluster of the stand on 127.0.0.1:<base + offset>."""
    pg = pwd.getpwnam("postgres")
    (stand.dir / "pg").mkdir(exist_ok=True)
    os.chown(stand.dir / "pg", pg.pw_uid, pg.pw_gid)
    os.chmod(stand.dir, 0o755)
    data = _data_dir(stand, cluster)
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
    status = ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "status"]
    if subprocess.run(status, stdout=subprocess.DEVNULL).returncode != 0:
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
            f"-c fsync=off -c full_page_writes=off {options}",
        )


def stop_cluster(stand: Stand, cluster: str) -> None:
    data = _data_dir(stand, cluster)
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
