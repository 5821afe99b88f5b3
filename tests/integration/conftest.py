"""The stand the integration tests run against: its own folder and ports, small data, torn down after."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import boto3
import psycopg
import pytest
import yaml
from airflow.sdk.timezone import utcnow

from ferry.ledger import Ledger
from ferry.plan import load_plan
from stand.control import down, up
from stand.core import STAND_PLAN, Stand
from stand.services.postgres import APP_ROLE, CLUSTERS, PG_BIN, PostgresPair

TEST_DAGS = Path(__file__).parent / "dags"
ROOT_DAGS = Path(__file__).resolve().parents[2] / "dags"
TEST_STAND = Stand(dir=Path("/tmp/ferry-stand-test"), port_base=55320, rows=20_000)


@pytest.fixture(scope="session")
def stand(airflow_db):
    """The test stand, up; its env (connections, plan) loaded into this process."""
    up(TEST_STAND)
    for line in TEST_STAND.env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ[name] = shlex.split(value)[0]
    yield TEST_STAND
    down(TEST_STAND)


@pytest.fixture
def source(stand) -> psycopg.Connection:
    """A superuser connection to the stand's source database."""
    with PostgresPair().admin(stand, "source") as conn:
        yield conn


@pytest.fixture
def target(stand) -> psycopg.Connection:
    """A superuser connection to the stand's target database."""
    with PostgresPair().admin(stand, "target") as conn:
        yield conn


@pytest.fixture
def stand_secrets(stand) -> list[str]:
    return list(json.loads(stand.state_file.read_text())["secrets"].values())


def run_dag(dag_folder: Path, dag_id: str, conf: dict | None = None):
    """Run a DAG of ``dag_folder`` (a configured bundle: see tests/conftest.py) once with dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_folder))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id].test(run_conf=conf)


@pytest.fixture
def target_schema(stand, source, target):
    """The source's schema copied onto the target (what ferry_week_prior does); removed afterwards."""
    dump = pg_tool(stand, "pg_dump", "source", "--schema-only", "--no-owner").stdout
    pg_tool(stand, "psql", "target", "-X", "-q", "-v", "ON_ERROR_STOP=1", input=dump)  # dumps hold psql meta-commands
    yield
    empty_public_schema(target)


def pg_tool(stand, program: str, cluster: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client program against the stand's ``saas`` database on ``cluster`` as postgres."""
    where = ["-h", str(stand.dir / "pg" / cluster), "-p", str(stand.port(CLUSTERS[cluster])), "-U", "postgres"]
    return subprocess.run(
        [str(PG_BIN / program), *where, *args, "saas"], check=True, capture_output=True, text=True, **kwargs
    )


def app_connection(stand, cluster: str) -> psycopg.Connection:
    """A connection as the application role, over TCP with its password, as the application has."""
    return psycopg.connect(
        host="127.0.0.1",
        port=stand.port(1 if cluster == "source" else 2),
        dbname="saas",
        user=APP_ROLE,
        password=stand.secret("app_role"),
        autocommit=True,
    )


def empty_public_schema(conn: psycopg.Connection) -> None:
    """Drop every table and sequence of schema public, keeping the schema and its privileges."""
    conn.execute(
        """
        DO $$ DECLARE r record; BEGIN
            FOR r IN SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname = 'public' LOOP
                EXECUTE 'DROP TABLE IF EXISTS ' || r.t || ' CASCADE';
            END LOOP;
            FOR r IN SELECT format('%I.%I', schemaname, sequencename) AS s FROM pg_sequences WHERE schemaname = 'public' LOOP
                EXECUTE 'DROP SEQUENCE IF EXISTS ' || r.s;
            END LOOP;
        END $$
        """
    )


def aws(stand, service: str):
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{stand.port(5)}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def twice(dag_id: str, conf: dict | None = None, dag_folder: Path = TEST_DAGS) -> int:
    """Run a DAG, then again: both succeed and the second writes nothing to the ledger. Return records written."""
    ledger = Ledger(load_plan())
    before = len(ledger.records())
    assert run_dag(dag_folder, dag_id, conf).state == "success"
    written = len(ledger.records()) - before
    assert run_dag(dag_folder, dag_id, conf).state == "success"
    assert len(ledger.records()) - before == written, f"re-running {dag_id} changed something"
    return written


@pytest.fixture
def mistaken_plan(tmp_path, monkeypatch):
    """Point the DAGs at a copy of the stand plan changed by ``edit``."""

    def make(edit) -> None:
        data = yaml.safe_load(STAND_PLAN.read_text())
        edit(data)
        path = tmp_path / "plan.yaml"
        path.write_text(yaml.safe_dump(data))
        monkeypatch.setenv("FERRY_PLAN", str(path))

    return make


class GateAnswerer:
    """Answers Airflow's human-in-the-loop gates as the UI's endpoint does: stores the response, resumes the task.

    :param decisions: task id of each gate -> the option an operator chooses ("Approve" or "Reject").
    """

    def __init__(self, decisions: dict[str, str]):
        import threading

        self.decisions, self.answered = decisions, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)

    def run(self) -> None:
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent
        from airflow.utils.session import create_session
        from sqlalchemy import select

        while not self.stop.wait(0.2):
            with create_session() as session:
                for detail in session.scalars(select(HITLDetail).where(HITLDetail.responded_at.is_(None))):
                    ti = session.get(TaskInstance, detail.ti_id)
                    if (
                        ti is None
                        or ti.task_id not in self.decisions
                        or str(ti.state) not in ("awaiting_input", "deferred")
                    ):
                        continue
                    detail.responded_by = {"id": "rehearsal", "name": "Rehearsal operator"}
                    detail.responded_at = utcnow()
                    detail.chosen_options = [self.decisions[ti.task_id]]
                    detail.params_input = {}
                    session.add(detail)
                    handle_event_submit(
                        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                    )
                    self.answered.append((ti.task_id, self.decisions[ti.task_id]))
