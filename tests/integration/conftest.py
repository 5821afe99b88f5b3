"""The stand the integration tests run against: its own folder and ports, small data, torn down after."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import boto3
import psycopg
import pytest
import yaml
from airflow.sdk.timezone import utcnow
from psycopg import sql

from ferry.capture import capture_slot
from ferry.hooks.replication import ReplicationHook
from ferry.ledger import Ledger
from ferry.plan import load_plan
from stand.control import down, load, up
from stand.core import STAND_PLAN, Stand
from stand.services.pgbouncer import PgBouncer
from stand.services.postgres import APP_ROLE, CLUSTERS, LOGINS, PostgresPair, client_bin

TEST_DAGS = Path(__file__).parent / "dags"
ROOT_DAGS = Path(__file__).resolve().parents[2] / "dags"
TEST_STAND = Stand(dir=Path("/tmp/ferry-stand-test"), port_base=25320, rows=20_000)


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
    """The source's schema copied onto the target as Ferry's login (what ferry_week_prior does); removed afterwards."""
    dump = pg_tool(stand, "pg_dump", "source", "--schema-only", "--no-owner").stdout
    as_ferry = f"SET ROLE {LOGINS['target']};\n"
    pg_tool(stand, "psql", "target", "-X", "-q", "-v", "ON_ERROR_STOP=1", input=as_ferry + dump)  # psql meta-commands
    yield
    empty_public_schema(target)


@contextmanager
def as_ferry(conn: psycopg.Connection, side: str):
    """Run what follows in ``conn`` (a superuser's) as Ferry's login on ``side``: what it creates, Ferry owns, as
    when the application's migrations run as doadmin or the RDS master user."""
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(LOGINS[side])))
    try:
        yield conn
    finally:
        conn.execute("RESET ROLE")


def ferry_connection(side: str) -> psycopg.Connection:
    """A connection as Ferry's own login on ``side`` (SSL, as its Airflow connection says), autocommit."""
    conn = ReplicationHook(f"ferry_{side}", "saas").get_conn()
    conn.autocommit = True
    return conn


def pg_tool(stand, program: str, cluster: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client program against the stand's ``saas`` database on ``cluster`` as postgres."""
    where = ["-h", str(stand.dir / "pg" / cluster), "-p", str(stand.port(CLUSTERS[cluster])), "-U", "postgres"]
    return subprocess.run(
        [str(client_bin() / program), *where, *args, "saas"], check=True, capture_output=True, text=True, **kwargs
    )


def app_connection(stand, cluster: str, user: str = APP_ROLE, password: str | None = None) -> psycopg.Connection:
    """A connection as the application role (or ``user``), over TCP with its password, as the application has."""
    return psycopg.connect(
        host="127.0.0.1",
        port=stand.port(1 if cluster == "source" else 2),
        dbname="saas",
        user=user,
        password=password or stand.secret("app_role"),
        autocommit=True,
    )


def empty_public_schema(conn: psycopg.Connection) -> None:
    """Drop every view, table, sequence, function, large object and extension of schema public's database, keeping
    the schema and its privileges."""
    conn.execute(
        """
        DO $$ DECLARE r record; BEGIN
            FOR r IN SELECT format('%I.%I', schemaname, viewname) AS v FROM pg_views WHERE schemaname = 'public' LOOP
                EXECUTE 'DROP VIEW IF EXISTS ' || r.v || ' CASCADE';
            END LOOP;
            FOR r IN SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables WHERE schemaname = 'public' LOOP
                EXECUTE 'DROP TABLE IF EXISTS ' || r.t || ' CASCADE';
            END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p') AND NOT EXISTS (
                         SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') LOOP
                EXECUTE 'DROP ROUTINE IF EXISTS ' || r.f || ' CASCADE';
            END LOOP;
            FOR r IN SELECT format('%I.%I', schemaname, sequencename) AS s FROM pg_sequences WHERE schemaname = 'public' LOOP
                EXECUTE 'DROP SEQUENCE IF EXISTS ' || r.s;
            END LOOP;
        END $$
        """
    )
    conn.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
    for (name,) in conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'").fetchall():
        conn.execute(sql.SQL("DROP EXTENSION {} CASCADE").format(sql.Identifier(name)))


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


def rerun_each_task(
    dag_folder: Path, dag_id: str, gates: dict[str, str] | None = None, may_fail: tuple[str, ...] = ()
) -> dict[str, str]:
    """Clear each task of the latest successful run of ``dag_id``, in the order they ran, and run it again.

    As the UI's Clear does: the task instance gets a new try and runs with its run's XComs and
    params. No re-run may write to the ledger; each must end as it first did (success, or skipped
    by the run's params), except tasks whose id starts
    with one of ``may_fail`` (read-only checks of the world before the stage, such as the
    pre-flight's "the old app answers" after D-day stopped it). Gates are answered with ``gates``.
    Returns each task re-run (mapped ones as ``task[i]``) and its state.
    """
    from airflow import settings
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session

    dag = DagBag(dag_folder=str(dag_folder)).dags[dag_id]
    ledger = Ledger(load_plan())
    before = [(r.action, r.target) for r in ledger.records()]
    rerun = {}
    with create_session() as session:
        run = sorted(DagRun.find(dag_id=dag_id, state="success", session=session), key=lambda r: r.run_after)[-1]
        order = sorted(
            run.get_task_instances(session=session), key=lambda ti: (ti.start_date or run.start_date, ti.map_index)
        )
        keys = [(ti.task_id, ti.map_index, getattr(ti.state, "value", ti.state)) for ti in order]
    session = settings.Session()
    with GateAnswerer(gates or {}):
        for task_id, map_index, first in keys:
            name = task_id if map_index < 0 else f"{task_id}[{map_index}]"
            if map_index < 0 and first == "skipped" and hasattr(dag.task_dict[task_id], "expand_input"):
                # A mapped task expanded over no value never ran: there is nothing to run again (clearing it in
                # the UI expands it again, over the same empty list).
                rerun[name] = first
                continue
            session.expire_all()
            ti = run.get_task_instance(task_id, session=session, map_index=map_index)
            clear_task_instances([ti], session, dag_run_state=False)
            ti.try_number += 1
            session.commit()
            _run_task(ti=ti, task=dag.task_dict[task_id], run_triggerer=True)
            deadline = time.monotonic() + 120
            while ti.state in ("awaiting_input", "scheduled") and time.monotonic() < deadline:  # a gate, answered
                time.sleep(0.2)
                session.expire_all()
                ti = run.get_task_instance(task_id, session=session, map_index=map_index)
                session.commit()  # no read transaction left open while the answerer writes
                if ti.state == "scheduled":  # resumed by its answer, as dag.test() resumes it
                    _run_task(ti=ti, task=dag.task_dict[task_id], run_triggerer=True)
            if not task_id.startswith(may_fail):  # as the first time: success, or skipped by the run's params
                assert ti.state == first, f"re-running {name} of {dag_id} ended {ti.state}, not {first}"
            after = [(r.action, r.target) for r in ledger.records()]
            assert after == before, f"re-running {name} of {dag_id} changed something: {after[len(before) :]}"
            rerun[name] = getattr(ti.state, "value", ti.state)
    return rerun


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
    :param before: task id of a gate -> what happens while it waits, once, before it is answered.
    """

    def __init__(self, decisions: dict[str, str], before: dict | None = None):
        import threading

        self.decisions, self.answered, self.before = decisions, [], dict(before or {})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.answer_waiting()
            except Exception as exc:  # noqa: BLE001 - a busy database: try again on the next poll
                print(f"GateAnswerer: {type(exc).__name__}: {exc}; trying again", flush=True)

    def answer_waiting(self) -> None:
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import handle_event_submit
        from airflow.triggers.base import TriggerEvent
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            waiting = session.execute(
                select(HITLDetail, TaskInstance)
                .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
                .where(TaskInstance.state == "awaiting_input", TaskInstance.task_id.in_(list(self.decisions)))
            ).all()
            for detail, ti in waiting:
                if detail.responded_at is None:
                    if ti.task_id in self.before:
                        self.before.pop(ti.task_id)()
                    detail.responded_by = {"id": "rehearsal", "name": "Rehearsal operator"}
                    detail.responded_at = utcnow()
                    detail.chosen_options = [self.decisions[ti.task_id]]
                    detail.params_input = {}
                    session.add(detail)
                    self.answered.append((ti.task_id, self.decisions[ti.task_id]))
                # Answered but still waiting (the answer met the task on its way into awaiting_input): resume it.
                handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)


@pytest.fixture
def clean_replication(stand, target):
    """Whatever the test leaves: load stopped, the old app's pooler on the source, fence lifted, subscription and publication dropped, target emptied."""
    yield
    plan = load_plan()
    source_hook, target_hook = ReplicationHook("ferry_source", "saas"), ReplicationHook("ferry_target", "saas")
    load(stand, "stop")
    PgBouncer().reset(stand)
    source_hook.remove_fence()
    for hook in (source_hook, target_hook):  # a run that failed at the comparison leaves its capture
        hook.drop_slot(capture_slot(plan))
    target_hook.drop_subscription(plan.subscription, publisher_reachable=False)
    source_hook.drop_slot(plan.subscription)
    source_hook.drop_publication(plan.publication)
    empty_public_schema(target)


def restore_new_cluster() -> None:
    """The stand's new cluster as before the stages: deployments at their counts, no webhook recorder."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    hook = KubernetesHook(conn_id="kube_stand")
    for name, count in (("web", 2), ("sidekiq", 1), ("pgbouncer", 2)):
        hook.apps_v1_client.patch_namespaced_deployment_scale(name, "saas", {"spec": {"replicas": count}})
    for delete in (hook.apps_v1_client.delete_namespaced_deployment, hook.core_v1_client.delete_namespaced_service):
        try:
            delete("webhook-recorder", "saas")
        except Exception:  # noqa: BLE001 - cleanup of what the stages may have made
            pass
    from stand.services.kube import KubeApi

    KubeApi().wait_for_new_app(TEST_STAND)  # the web pods ready behind the new app's Service


@pytest.fixture
def new_app_serving(stand):
    """The new app answers: the new cluster's deployments at their counts, the web pods ready behind its Service
    (a stage before this test may have scaled them to zero, as ferry_day_before does)."""
    restore_new_cluster()


@pytest.fixture
def after_week_prior(stand, target):
    """Undo what ferry_week_prior does: subscription, slot, publication, target schema, SSM parameters."""
    yield
    plan = load_plan()
    src, tgt = ReplicationHook("ferry_source", "saas"), ReplicationHook("ferry_target", "saas")
    src.drop_subscription(plan.reverse_subscription, publisher_reachable=False)  # D-day's reverse replication
    tgt.drop_slot(plan.reverse_subscription)
    tgt.drop_publication(plan.reverse_publication)
    tgt.remove_fence()
    tgt.drop_subscription(plan.subscription, publisher_reachable=False)
    src.drop_slot(plan.subscription)
    src.drop_publication(plan.publication)
    empty_public_schema(target)
    restore_new_cluster()  # ferry_day_before scaled the new deployments to zero
    ssm = aws(stand, "ssm")
    for p in ssm.get_parameters_by_path(Path="/stand", Recursive=True)["Parameters"]:
        ssm.delete_parameter(Name=p["Name"])
    # A new migration begins with a new ledger: what this one did (a D-day past its cutover, a decommission) must
    # not make the next test's rollback refuse.
    s3, prefix = aws(stand, "s3"), f"{plan.ledger_prefix}/ledger/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=plan.ledger.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=plan.ledger.bucket, Key=obj["Key"])
