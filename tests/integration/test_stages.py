"""The stage DAGs of dags/ against the stand, as an operator triggers them."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from ferry.capture import SIDES, CaptureStore, ChangeCapture
from ferry.hooks.replication import ReplicationHook
from ferry.ledger import Ledger
from ferry.plan import load_plan
from stand.control import load
from stand.services.pgbouncer import PgBouncer
from tests.integration.conftest import (
    ROOT_DAGS,
    TEST_DAGS,
    as_ferry,
    aws,
    rerun_each_task,
    restore_new_cluster,
    run_dag,
    twice,
)


def wait_until(predicate, what: str, timeout_s: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.5)


def would_changes(run) -> list[dict]:
    """What the tasks of a dry run said they would change (their ``would_change`` XComs)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id, XComModel.key == "would_change"
            )
        ).all()
    return [w for value in rows for w in XComModel.deserialize_value(SimpleNamespace(value=value))]


def test_week_prior_brings_the_target_in_sync_and_a_rerun_changes_nothing(stand, source, target, after_week_prior):
    plan = load_plan()
    ledger = len(Ledger(plan).records())
    dry = run_dag(ROOT_DAGS, "ferry_week_prior", conf={"dry_run": True})
    assert dry.state == "success"
    assert len(Ledger(plan).records()) == ledger  # a dry run changes nothing ...
    assert target.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    assert source.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    assert not aws(stand, "ssm").get_parameters_by_path(Path="/stand", Recursive=True)["Parameters"]
    would = would_changes(dry)  # ... and says what it would change
    assert {"copy_schema", "create_publication", "create_subscription", "put_parameter", "stage_complete"} <= {
        w["action"] for w in would
    }

    # schema, publication, subscription, 3 parameters, the stage's completion
    assert twice("ferry_week_prior", dag_folder=ROOT_DAGS) == 7
    rerun = rerun_each_task(ROOT_DAGS, "ferry_week_prior")
    assert {"copy_schema", "create_subscription", "wait_initial_copy", "mark_stage_complete"} <= set(rerun)
    assert set(rerun.values()) == {"success"}
    for table in ("customers", "invoices", "page_views"):
        assert (
            source.execute(f"SELECT count(*) FROM {table}").fetchone()
            == target.execute(f"SELECT count(*) FROM {table}").fetchone()
        )
    assert target.execute("SELECT subenabled FROM pg_subscription").fetchone() == (True,)
    staging = aws(stand, "ssm").get_parameter(Name="/stand/production/RAILS_ENV")["Parameter"]["Value"]
    assert staging == "staging"
    completions = Ledger(plan).records(action="stage_complete")
    assert [r.target for r in completions] == ["stage:ferry_week_prior"]

    # A table created on the source since: the stage run again creates it on the target, publishes it,
    # subscribes to it and copies its rows; run again after that, it changes nothing.
    with as_ferry(source, "source"):  # the application's migration, run as doadmin
        source.execute("CREATE TABLE gift_cards (code text PRIMARY KEY, cents int NOT NULL)")
        source.execute("INSERT INTO gift_cards SELECT 'G' || i, i * 100 FROM generate_series(1, 40) i")
    try:
        # copy_schema (that table only), create_publication (altered), refresh_subscription
        assert twice("ferry_week_prior", dag_folder=ROOT_DAGS) == 3
        assert target.execute("SELECT count(*), sum(cents) FROM gift_cards").fetchone() == (40, 82000)
        copied = Ledger(plan).records(action="copy_schema")
        assert copied[-1].after["tables"] == ["public.gift_cards"]
    finally:
        source.execute("DROP TABLE gift_cards")


def test_a_stage_refuses_to_start_before_the_previous_one_completed(stand, monkeypatch, tmp_path, capfd):
    """A plan whose ledger has no record of ferry_week_prior (another name, another ledger prefix)."""
    monkeypatch.setenv("FERRY_PLAN", str(tmp_path / "plan.yaml"))
    (tmp_path / "plan.yaml").write_text(
        (ROOT_DAGS.parent / "include" / "stand" / "plan.stand.yaml")
        .read_text()
        .replace("name: stand-saas", "name: stand-fresh")
    )
    capfd.readouterr()
    assert run_dag(TEST_DAGS, "ferry_test_check_week_prior").state == "failed"
    assert "ferry_week_prior has not completed (no record in the ledger under ferry/stand-fresh)" in "".join(
        capfd.readouterr()
    )


def test_day_before_after_week_prior_and_a_rerun_changes_nothing(stand, target, after_week_prior):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from tests.integration.test_aws_side import records

    assert run_dag(ROOT_DAGS, "ferry_week_prior").state == "success"
    original = records(stand)
    s3 = aws(stand, "s3")
    for bucket in ("stand-uploads-aws", "stand-exports-aws"):  # as if no earlier test had synced them
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
    apps = KubernetesHook(conn_id="kube_stand").apps_v1_client
    try:
        ledger = len(Ledger(load_plan()).records())
        dry = run_dag(ROOT_DAGS, "ferry_day_before", conf={"dry_run": True})
        assert dry.state == "success" and len(Ledger(load_plan()).records()) == ledger
        assert records(stand) == original and s3.list_objects_v2(Bucket="stand-uploads-aws")["KeyCount"] == 0
        assert "webhook-recorder" not in {d.metadata.name for d in apps.list_namespaced_deployment("saas").items}
        assert {"create_recorder", "sync_bucket", "put_parameter", "lower_ttl", "scale_deployment"} <= {
            w["action"] for w in would_changes(dry)
        }
        # recorder (2 objects), 2 bucket pairs, 3 parameters, 2 TTLs, 3 deployments, completion
        assert twice("ferry_day_before", dag_folder=ROOT_DAGS) == 13
        assert len(rerun_each_task(ROOT_DAGS, "ferry_day_before")) == len(
            run_dag(ROOT_DAGS, "ferry_day_before").get_task_instances()
        )
        assert {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment("saas").items} == {
            "web": 0,
            "sidekiq": 0,
            "pgbouncer": 0,
            "webhook-recorder": 2,
        }
        assert all(ttl == 60 for _, ttl in records(stand).values())
        assert aws(stand, "ssm").get_parameter(Name="/stand/production/RAILS_ENV")["Parameter"]["Value"] == "production"
        assert aws(stand, "s3").list_objects_v2(Bucket="stand-uploads-aws")["KeyCount"] == 40
    finally:
        for name, count in (("web", 2), ("sidekiq", 1), ("pgbouncer", 2)):
            apps.patch_namespaced_deployment_scale(name, "saas", {"spec": {"replicas": count}})
        apps.delete_namespaced_deployment("webhook-recorder", "saas")
        KubernetesHook(conn_id="kube_stand").core_v1_client.delete_namespaced_service("webhook-recorder", "saas")
        assert run_dag(TEST_DAGS, "ferry_test_dns_restore").state == "success"
        assert records(stand) == original


def test_rollback_of_all_stages_leaves_both_sides_as_before_ferry(stand, source, target, after_week_prior):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from tests.integration.test_aws_side import records

    apps = KubernetesHook(conn_id="kube_stand").apps_v1_client

    def counts() -> dict[str, int]:
        return {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment("saas").items}

    original_dns, original_counts = records(stand), counts()
    assert original_counts == {"web": 2, "sidekiq": 1, "pgbouncer": 2}
    assert run_dag(ROOT_DAGS, "ferry_week_prior").state == "success"
    assert run_dag(ROOT_DAGS, "ferry_day_before").state == "success"
    assert counts()["webhook-recorder"] == 2 and counts()["web"] == 0

    # DNS x2, deployments x3, SSM production x3 then staging x3, recorder x2, subscription, publication,
    # the copied schema: 16
    assert twice("ferry_rollback", {"undo_all_stages": True}, dag_folder=ROOT_DAGS) == 16
    assert target.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    assert records(stand) == original_dns and counts() == original_counts
    assert not aws(stand, "ssm").get_parameters_by_path(Path="/stand", Recursive=True)["Parameters"]
    assert target.execute("SELECT count(*) FROM pg_subscription").fetchone() == (0,)
    assert source.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    assert source.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)
    rerun = rerun_each_task(ROOT_DAGS, "ferry_rollback")
    assert rerun["scale_down_new_deployments"] == "skipped" and rerun["drop_publication"] == "success"


def test_rollback_gives_the_service_back_to_the_old_side_losing_nothing(stand, source, target):
    import base64
    import json

    import httpx
    import psycopg
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from tests.integration.conftest import app_connection
    from tests.integration.test_aws_side import records

    s3 = aws(stand, "s3")
    for obj in s3.list_objects_v2(Bucket="ferry-stand-webhooks").get("Contents", []):
        s3.delete_object(Bucket="ferry-stand-webhooks", Key=obj["Key"])
    (stand.dir / "apps" / "old_app.jsonl").unlink(missing_ok=True)
    original = records(stand)
    apps = KubernetesHook(conn_id="kube_stand").apps_v1_client
    scopes = [t["qualified"] for t in ReplicationHook("ferry_source", "saas").get_tables(["public"])]

    # D-day got this far: webhooks to the recorder, VM services stopped, source fenced, DNS switched.
    load(stand, "start", rate=20)
    assert run_dag(TEST_DAGS, "ferry_test_dns_route_webhooks").state == "success"
    assert run_dag(TEST_DAGS, "ferry_test_vms_stop").state == "success"
    ReplicationHook("ferry_source", "saas").install_fence(scopes, ["doadmin"])
    plan = load_plan()
    for side in SIDES:  # D-day's change capture, started before its live comparison
        ChangeCapture(plan, side, ReplicationHook(f"ferry_{side}", "saas"), CaptureStore(plan)).start()
    assert run_dag(TEST_DAGS, "ferry_test_dns_switch").state == "success"
    for i in range(5):
        assert (
            httpx.post(f"http://127.0.0.1:{stand.port(7)}/webhooks/paddle", json={"id": f"late_{i}"}).status_code == 202
        )
    with app_connection(stand, "source") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/fenced', now())")

    try:
        before = len(Ledger(load_plan()).records())
        dry = run_dag(ROOT_DAGS, "ferry_rollback", conf={"dry_run": True})
        assert dry.state == "success" and len(Ledger(load_plan()).records()) == before
        assert records(stand) != original  # still switched: the dry run only said what it would undo
        assert {
            "restore_record",
            "unfence_source",
            "drop_capture_slot",
            "start_unit",
            "scale_deployment",
            "replay_webhooks",
        } <= {w["action"] for w in would_changes(dry)}
        # restore_record x2, unfence, drop_capture_slot x2, start_unit x2, scale x3, replay
        assert twice("ferry_rollback", dag_folder=ROOT_DAGS) == 11
        for conn in (source, target):
            assert conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%capture'"
            ).fetchone() == (0,)
        rerun_each_task(ROOT_DAGS, "ferry_rollback")
        assert records(stand) == original
        with app_connection(stand, "source") as app:
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/after-rollback', now())")
        assert httpx.get(f"http://127.0.0.1:{stand.port(8)}/healthz").status_code == 200
        assert stand.process_alive("load")
        got = [json.loads(line) for line in (stand.dir / "apps" / "old_app.jsonl").read_text().splitlines()]
        assert [json.loads(base64.b64decode(e["body_b64"]))["id"] for e in got] == [f"late_{i}" for i in range(5)]
        assert {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment("saas").items} == {
            "web": 0,
            "sidekiq": 0,
            "pgbouncer": 0,
        }
    finally:
        load(stand, "stop")
        source.execute("DELETE FROM page_views WHERE path = '/after-rollback'")
        for name, count in (("web", 2), ("sidekiq", 1), ("pgbouncer", 2)):
            apps.patch_namespaced_deployment_scale(name, "saas", {"spec": {"replicas": count}})


def test_rollback_refuses_once_the_new_side_took_writes_without_reverse_replication(
    stand, source, target, after_week_prior, mistaken_plan, capfd
):
    """A plan without replication.reverse: D-day to the end (new deployments up, DNS switched), the application
    writes on the new side; ferry_rollback refuses every step, naming the table that holds what the old side
    lacks, and changes nothing."""
    from tests.integration.conftest import app_connection
    from tests.integration.test_aws_side import records

    mistaken_plan(lambda d: (d["replication"].pop("reverse"), d["source"].pop("pooler")))  # a pooler needs reverse
    plan = load_plan()
    original = records(stand)
    try:
        run, states, _, _ = stages_to_d_day(capfd)
        assert run.state == "success", states
        assert source.execute("SELECT count(*) FROM pg_subscription").fetchone() == (0,)  # no reverse replication
        with app_connection(stand, "target") as app:
            for i in range(3):
                app.execute(
                    "INSERT INTO customers (email, name, country) VALUES (%s, 'new side', 'NL')",
                    (f"ns{i}@example.com",),
                )
        (old,) = source.execute("SELECT count(*) FROM customers").fetchone()

        ledger, dns = len(Ledger(plan).records()), records(stand)
        capfd.readouterr()
        refused = run_dag(ROOT_DAGS, "ferry_rollback")
        said = "".join(capfd.readouterr())
        states = {ti.task_id: ti.state for ti in refused.get_task_instances()}
        assert refused.state == "failed" and set(states.values()) == {"failed", "skipped"}, states
        assert "no reverse replication" in said and "fix forward on the new side" in said
        assert f"public.customers: {old + 3:,} rows on the new side, {old:,} on the old" in said
        assert len(Ledger(plan).records()) == ledger and records(stand) == dns
        assert source.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'ferry_fence'").fetchone()[0] > 0
    finally:
        give_the_stand_back(stand)
        assert records(stand) == original


D_DAY_GATES = {"gate_go_no_go": "Approve", "gate_comparison": "Approve", "gate_point_of_no_return": "Approve"}


def stages_to_d_day(capfd, before: dict | None = None, conf: dict | None = None):
    """ferry_week_prior, ferry_day_before, then ferry_d_day (triggered with ``conf``) with its gates approved
    (``before``: what happens while a gate waits, see GateAnswerer); return D-day's run, its task states, what it
    printed and the gates answered."""
    from tests.integration.conftest import GateAnswerer

    assert run_dag(ROOT_DAGS, "ferry_week_prior").state == "success"
    assert run_dag(ROOT_DAGS, "ferry_day_before").state == "success"
    capfd.readouterr()
    with GateAnswerer(D_DAY_GATES, before=before) as answerer:
        run = run_dag(ROOT_DAGS, "ferry_d_day", conf)
    said = "".join(capfd.readouterr())
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}, said, [g for g, _ in answerer.answered]


def the_service_goes_back_before_the_cutover(stand, target, plan, original) -> None:
    """After a D-day stopped in its freeze: the subscription is still in place, ferry_rollback succeeds and DNS is
    as it was (``original``)."""
    from tests.integration.test_aws_side import records

    assert target.execute(
        "SELECT count(*) FROM pg_subscription WHERE subname = %s", (plan.subscription,)
    ).fetchone() == (1,)
    rolled = run_dag(ROOT_DAGS, "ferry_rollback")
    assert rolled.state == "success", {ti.task_id: ti.state for ti in rolled.get_task_instances()}
    assert records(stand) == original


@pytest.fixture
def person_at_comparison(monkeypatch, tmp_path):
    """The stand's plan with ``thresholds.comparison_gate: person``: D-day asks at gate_comparison, inside the
    freeze (the default, ``auto``, goes on by itself once everything is verified)."""
    import yaml

    from ferry.plan import plan_source

    data = yaml.safe_load(Path(plan_source()).read_text())
    data["thresholds"]["comparison_gate"] = "person"
    path = tmp_path / "plan.person.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("FERRY_PLAN", str(path))
    assert load_plan().thresholds.comparison_gate == "person"
    return path


def give_the_stand_back(stand) -> None:
    """After a D-day that stopped the old app (or switched its pooler) and fenced the source: the VMs' units started
    (the load unit with them, then stopped), the pooler on the source and resumed, the fence lifted, the new cluster
    and DNS as before the stages."""
    assert run_dag(TEST_DAGS, "ferry_test_vms_start").state == "success"
    load(stand, "stop")
    PgBouncer().reset(stand)
    ReplicationHook("ferry_source", "saas").remove_fence()
    ReplicationHook("ferry_target", "saas").remove_fence()  # D-day's fence_target, when it stopped before promoting
    restore_new_cluster()
    assert run_dag(TEST_DAGS, "ferry_test_dns_restore").state == "success"


def test_a_write_past_the_fence_while_the_comparison_gate_waits_stops_the_cutover(
    stand, source, target, after_week_prior, person_at_comparison, capfd
):
    """With a person at the comparison's gate (``thresholds.comparison_gate: person``), while it waits, a client sharing Ferry's login writes on the source (the fence lets that
    login write) and a write is made directly on the target: the last check before the subscription's drop names
    both, D-day stops there with the subscription in place, and ferry_rollback gives the service back. A session
    sharing Ferry's login, open before D-day, is named by the pre-flight and ended by the fence."""
    import psycopg

    from ferry.ledger import Action
    from tests.integration.conftest import app_connection, ferry_connection
    from tests.integration.test_aws_side import records

    plan, original = load_plan(), records(stand)

    def write_past_the_fence() -> None:
        with ferry_connection("source") as dba:
            dba.execute("SET application_name = 'dba-script'")
            dba.execute("INSERT INTO customers (email, name, country) VALUES ('gate@example.com', 'G', 'NL')")
        # The target is fenced since before the go/no-go: only Ferry's login writes there (a DBA script using it).
        with ferry_connection("target") as dba_on_target:
            dba_on_target.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/direct-on-target', now())")
        with app_connection(stand, "source") as app:  # the fence holds tables, not large objects
            app.execute("SELECT lo_from_bytea(0, 'written after the copy')")

    cron = ferry_connection("source")
    cron.execute("SET application_name = 'nightly-export'")
    try:
        run, states, said, answered = stages_to_d_day(capfd, before={"gate_comparison": write_past_the_fence})
        assert answered == ["gate_go_no_go", "gate_comparison"]
        assert run.state == "failed" and states["drop_subscription_and_sync_sequences"] == "failed", states
        assert "changed since the freeze's comparison, so never verified" in said, said[-6000:]
        assert "source: public.customers (1 change)" in said and "target: public.page_views (1 change)" in said
        assert "application_name 'nightly-export'" in said  # named by D-day's pre-flight
        assert re.search(r"large objects \d+ differ between source and target", said), said[-3000:]
        assert target.execute(
            "SELECT count(*) FROM pg_subscription WHERE subname = %s", (plan.subscription,)
        ).fetchone() == (1,)
        assert not [r for r in Ledger(plan).records(action=Action.DROP_SUBSCRIPTION) if r.run_id == run.run_id]
        with pytest.raises(psycopg.OperationalError):  # ended by the fence
            cron.execute("SELECT 1")

        # The new side never served: ferry_rollback gives the service back.
        rolled = run_dag(ROOT_DAGS, "ferry_rollback")
        assert rolled.state == "success", {ti.task_id: ti.state for ti in rolled.get_task_instances()}
        assert records(stand) == original
    finally:
        cron.close()
        source.execute("DELETE FROM customers WHERE email = 'gate@example.com'")
        source.execute("SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE lomowner = 'saas_app'::regrole")
        give_the_stand_back(stand)


def test_a_table_created_after_the_tables_were_listed_stops_the_freeze_naming_it(
    stand, source, target, after_week_prior, capfd
):
    """A table created on the source while D-day's first gate waits (after list_tables): the fence covers it, but
    it was never published, copied nor compared. The freeze stops at the comparison, naming it, before the
    cutover; ferry_rollback gives the service back."""
    from tests.integration.test_aws_side import records

    plan, original = load_plan(), records(stand)

    def migrate() -> None:  # the application's migration, run as doadmin while the gate waits
        with as_ferry(source, "source"):
            source.execute("CREATE TABLE vouchers (id bigint PRIMARY KEY, code text NOT NULL)")
        source.execute("INSERT INTO vouchers VALUES (1, 'LATE')")

    try:
        run, states, said, answered = stages_to_d_day(capfd, before={"gate_go_no_go": migrate})
        assert run.state == "failed" and states["cutover_at_pooler"] == "failed", states
        assert answered == ["gate_go_no_go"]
        assert "fenced but never compared: public.vouchers" in said, said[said.find("Task failed with exception") :][
            :6000
        ]
        the_service_goes_back_before_the_cutover(stand, target, plan, original)
    finally:
        source.execute("DROP TABLE IF EXISTS vouchers")
        give_the_stand_back(stand)


def test_with_no_person_at_the_comparison_a_narrowed_comparison_stops_the_freeze(
    stand, source, target, after_week_prior, capfd
):
    """thresholds.comparison_gate: auto (the stand's plan) asks no one inside the freeze: D-day goes on by itself
    only once every table is verified. Triggered with one table to compare, its freeze (one task with the pooler)
    stops at the comparison after writing its report, naming what was not verified, the subscription in place;
    ferry_rollback gives the service back."""
    from ferry.ledger import Action
    from tests.integration.test_aws_side import records

    plan, original = load_plan(), records(stand)
    assert plan.thresholds.comparison_gate == "auto"
    try:
        run, states, said, answered = stages_to_d_day(capfd, conf={"tables": ["customers"]})
        assert run.state == "failed" and states["cutover_at_pooler"] == "failed", states
        assert states["start_reverse_replication"] == "upstream_failed", states
        assert not [r for r in Ledger(plan).records(action=Action.DROP_SUBSCRIPTION) if r.run_id == run.run_id]
        assert "gate_comparison" not in states and answered == ["gate_go_no_go"]
        assert "not everything was verified" in said and "no person is asked before the cutover" in said
        assert "table(s) in scope not compared" in said, said[-3000:]
        narrowed = Path(
            os.environ["FERRY_REPORT_DIR"], "compare", f"ferry_d_day__{re.sub(r'[^A-Za-z0-9_.-]', '_', run.run_id)}.md"
        ).read_text()
        assert "**Not everything was verified:**" in narrowed
        # The guardrail gave the service back by itself: the source unfenced, the old app's units started.
        assert states["revert_freeze"] == "success", states
        the_freeze_was_reverted(plan, run, ["cutover_at_pooler"])
        the_service_goes_back_before_the_cutover(stand, target, plan, original)
    finally:
        give_the_stand_back(stand)


def states_of(run) -> dict[str, str]:
    return {ti.task_id: getattr(ti.state, "value", ti.state) for ti in run.get_task_instances()}


def the_freeze_was_reverted(plan, run, failed: list[str]) -> dict:
    """After a D-day whose freeze failed: revert_freeze unfenced the source and resumed the old app's pooler on it
    (or, without a pooler, started the old app's units again), in the ledger, by this run; its report names the tasks
    that failed. Returns the report."""
    import json

    from ferry.hooks.pooler import PoolerHook
    from ferry.ledger import Action, Target

    assert ReplicationHook("ferry_source", "saas").get_fenced_tables() == []
    mine = [r for r in Ledger(plan).records() if r.run_id == run.run_id and r.done]
    stopped = {r.target for r in mine if r.action == Action.STOP_UNIT}
    if plan.source.pooler:  # the old app kept running; its queries waited in the pooler, now on the source again
        assert not stopped
        paused_by = "cutover_at_pooler" if plan.thresholds.comparison_gate == "auto" else "fence_source_and_catch_up"
        assert [r.task for r in mine if r.action == Action.PAUSE_POOLER] == [paused_by]
        assert [r.task for r in mine if r.action == Action.RESUME_POOLER] == ["revert_freeze"]
        assert not [r for r in mine if r.action == Action.REPOINT_POOLER]
        entry = PoolerHook(plan).entry()
        source = ReplicationHook("ferry_source", "saas").connection
        assert not entry["paused"] and (entry["host"], entry["port"]) == (source.host, source.port)
    else:
        assert Target.vm("vm-1", "saas-web") in stopped  # the old app (the load's unit may have been stopped already)
        assert {r.target for r in mine if r.action == Action.START_UNIT} == stopped
    assert [r.task for r in mine if r.action == Action.UNFENCE_SOURCE] == ["revert_freeze"]
    stem = "d_day_reverted__" + re.sub(r"[^A-Za-z0-9_.-]", "_", run.run_id)
    reverted = json.loads(Path(os.environ["FERRY_REPORT_DIR"], "d_day", f"{stem}.json").read_text())
    assert reverted["failed_tasks"] == failed and reverted["tables_unfenced"] > 0
    assert reverted["freeze_s"] is not None and reverted["max_freeze_s"] == plan.thresholds.freeze_budget_s
    assert (
        "Failed in the freeze: " + ", ".join(failed)
        in Path(os.environ["FERRY_REPORT_DIR"], "d_day", f"{stem}.md").read_text()
    )
    return reverted


def test_a_catch_up_that_cannot_finish_within_max_freeze_s_is_reverted_by_itself(
    stand, source, target, after_week_prior, mistaken_plan, capfd
):
    """thresholds.max_freeze_s: 4. While the go/no-go gate waits, a session on the target takes a lock the
    subscription's apply needs and a customer is written on the source: after the fence the target cannot confirm
    it. The catch-up gives up when the budget is spent, revert_freeze unfences the source and starts the old app's
    units by itself (a plan without source.pooler: the fallback), D-day fails with a report saying why; the subscription is still there, ferry_rollback does the
    rest."""
    from stand.services.postgres import PostgresPair
    from tests.integration.test_aws_side import records

    # Without a pooler (the fallback: the old app's units stopped for the freeze, started again by the revert).
    mistaken_plan(lambda data: (data["thresholds"].update(max_freeze_s=4), data["source"].pop("pooler")))
    plan, original = load_plan(), records(stand)
    assert plan.thresholds.freeze_budget_s == 4 and plan.source.pooler is None
    blocker = PostgresPair().admin(stand, "target")
    blocker.autocommit = False

    def hold_the_apply() -> None:
        blocker.execute("LOCK TABLE customers IN SHARE MODE")  # the apply worker's INSERT waits
        source.execute("INSERT INTO customers (email, name, country) VALUES ('held@example.com', 'H', 'NL')")

    try:
        run, states, said, answered = stages_to_d_day(capfd, before={"gate_go_no_go": hold_the_apply})
        assert run.state == "failed" and states["fence_source_and_catch_up"] == "failed", states
        assert states["compare_changes"] == "upstream_failed" and states["revert_freeze"] == "success", states
        assert "has not confirmed the fence within thresholds.max_freeze_s (4 s of freeze" in said, said[-3000:]
        assert "D-day reverted: the old side serves again" in said
        the_freeze_was_reverted(plan, run, ["fence_source_and_catch_up"])
        blocker.rollback()
        the_service_goes_back_before_the_cutover(stand, target, plan, original)
    finally:
        blocker.close()
        source.execute("DELETE FROM customers WHERE email = 'held@example.com'")
        give_the_stand_back(stand)


def release_once_waited_for(target, blocker) -> None:
    """Commit ``blocker``'s transaction (releasing its locks) once a session on the target has asked whether a
    subscriber confirmed a position (``slot_caught_up.sql``: the decommission's wait has begun), or after five
    minutes."""
    deadline = time.monotonic() + 300
    asked = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%AS caught_up,%' AND pid <> pg_backend_pid()"
    while target.execute(asked).fetchone()[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    blocker.commit()
    blocker.close()


def test_d_day_end_to_end_with_its_gates_answered(stand, source, target, after_week_prior, stand_secrets, capfd):
    import base64
    import json
    import threading

    import httpx
    import psycopg

    from stand.services.postgres import PostgresPair
    from tests.integration.conftest import GateAnswerer, app_connection
    from tests.integration.test_aws_side import records

    s3 = aws(stand, "s3")
    for obj in s3.list_objects_v2(Bucket="ferry-stand-webhooks").get("Contents", []):
        s3.delete_object(Bucket="ferry-stand-webhooks", Key=obj["Key"])
    (stand.dir / "apps" / "new_app.jsonl").unlink(missing_ok=True)
    original = records(stand)
    load(stand, "start", rate=50)
    try:
        assert run_dag(ROOT_DAGS, "ferry_week_prior").state == "success"
        assert run_dag(ROOT_DAGS, "ferry_day_before").state == "success"
        for i in range(3):  # webhooks that arrive during the freeze
            assert (
                httpx.post(f"http://127.0.0.1:{stand.port(7)}/webhooks/stripe", json={"id": f"dday_{i}"}).status_code
                == 202
            )
        gates = {"gate_go_no_go": "Approve", "gate_point_of_no_return": "Approve"}  # none inside the freeze
        # The subscription reaches the source as Ferry's connection says: SSL verified against the CA.
        assert "sslmode=verify-full" in target.execute("SELECT subconninfo FROM pg_subscription").fetchone()[0]

        # A right Ferry's login needs in the freeze is missing: the pre-flight names it and D-day stops there.
        ledger = len(Ledger(load_plan()).records())
        source.execute("REVOKE pg_signal_backend FROM doadmin")
        try:
            refused = run_dag(ROOT_DAGS, "ferry_d_day")
        finally:
            source.execute("GRANT pg_signal_backend TO doadmin")
        states = {ti.task_id: ti.state for ti in refused.get_task_instances()}
        assert refused.state == "failed" and states["preflight.check_privileges"] == "failed", states
        assert states.get("start_change_capture") in (None, "upstream_failed"), states
        assert len(Ledger(load_plan()).records()) == ledger, "D-day changed something while a right was missing"

        # A dry run first, with the tables to compare and a timeout from the trigger form: it changes nothing.
        ledger, dns = len(Ledger(load_plan()).records()), records(stand)
        with GateAnswerer(gates):
            dry = run_dag(
                ROOT_DAGS, "ferry_d_day", conf={"dry_run": True, "tables": ["customers"], "catch_up_timeout_s": 60}
            )
        assert dry.state == "success", {ti.task_id: ti.state for ti in dry.get_task_instances()}
        assert len(Ledger(load_plan()).records()) == ledger and records(stand) == dns
        assert httpx.get(f"http://127.0.0.1:{stand.port(8)}/healthz").status_code == 200  # old app still up
        with app_connection(stand, "source") as app:  # source not fenced
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/dry-run', now())")
        assert target.execute("SELECT count(*) FROM pg_subscription").fetchone() == (1,)
        dry_report = json.loads(
            Path(
                os.environ["FERRY_REPORT_DIR"], "d_day", f"d_day__{re.sub(r'[^A-Za-z0-9_.-]', '_', dry.run_id)}.json"
            ).read_text()
        )
        assert dry_report["dry_run"] and [c["table"] for c in dry_report["comparison"]] == ["public.customers"]
        narrowed = Path(
            os.environ["FERRY_REPORT_DIR"], "compare", f"ferry_d_day__{re.sub(r'[^A-Za-z0-9_.-]', '_', dry.run_id)}.md"
        ).read_text()
        assert "**Not everything was verified:**" in narrowed, narrowed  # the form's tables narrowed it: said
        assert "6 table(s) in scope not compared" in narrowed and "public.invoices" in narrowed
        assert {"switch_record", "pause_pooler", "fence_source", "drop_subscription", "set_sequence"} <= {
            w["action"] for w in dry_report["would_change"]
        }
        assert "stop_unit" not in {w["action"] for w in dry_report["would_change"]}  # the old app keeps serving

        # A table created on the source after week prior: D-day's scope step brings it in before the pre-flight.
        with as_ferry(source, "source"):  # the application's migration, run as doadmin
            source.execute("CREATE TABLE gift_cards (code text PRIMARY KEY, cents int NOT NULL)")
            source.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON gift_cards TO saas_app")
        source.execute("INSERT INTO gift_cards SELECT 'G' || i, i * 100 FROM generate_series(1, 40) i")
        active = "SELECT count(DISTINCT customer_id) FROM subscriptions WHERE status = 'active'"
        (active_before,) = source.execute(active).fetchone()  # the load only ever activates subscriptions
        with GateAnswerer(gates) as answerer:
            run = run_dag(ROOT_DAGS, "ferry_d_day")
        states = {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert run.state == "success", states
        assert [task for task, _ in answerer.answered] == list(gates)

        stem = "d_day__" + re.sub(r"[^A-Za-z0-9_.-]", "_", run.run_id)
        report = json.loads(Path(os.environ["FERRY_REPORT_DIR"], "d_day", f"{stem}.json").read_text())
        assert report["fence_lsn"] and report["freeze_window_s"] > 0
        # The switch at the pooler: the old app's queries waited in PgBouncer from before the fence until it was
        # pointed at the target and resumed; the write load (through it) saw no write refused or failed.
        users = report["users"]
        assert users["switch"] == "pooler" and users["pause_s"] > report["freeze_window_s"], users
        assert users["paused_at"] < report["freeze_start"] and users["resumed_at"] > report["freeze_end"], users
        from ferry.hooks.pooler import PoolerHook
        from stand.control import load_stats

        target_conn = ReplicationHook("ferry_target", "saas").connection
        entry = PoolerHook(load_plan()).entry()
        assert (entry["host"], entry["port"], entry["paused"]) == (target_conn.host, target_conn.port, False)
        with psycopg.connect(PgBouncer().dsn(stand), autocommit=True, prepare_threshold=None) as old_app:
            old_app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/through-the-pooler', now())")
        assert target.execute("SELECT count(*) FROM page_views WHERE path = '/through-the-pooler'").fetchone() == (1,)
        time.sleep(1.5)  # the load's counts reach its file every second
        written = load_stats(stand)
        assert written["refused"] == written["errors"] == 0 and written["committed"] > 0, written
        waited = written["longest_pause_s"]
        assert waited >= 0.5 * users["pause_s"], (written, users)  # a write waited the pause out, none failed
        load(stand, "stop")  # the rest checks and re-runs D-day's tasks on a quiet system
        assert report["replication_lag_at_fence"]["bytes"] >= 0
        assert report["replication_lag_at_fence"]["caught_up_after_s"] >= 0
        # Mapped tasks are in the timeline as task[i].
        assert {t["task"] for t in report["timeline"]} >= {ti.task_id for ti in run.get_task_instances()} - {
            "compare_live",
            "mark_stage_complete",
            "gate_point_of_no_return",  # asked after the report: nobody waits on it
            "revert_freeze",  # nothing in the freeze failed: skipped
        }
        assert states_of(run)["revert_freeze"] == "skipped"
        # The freeze, fence to writable, is one task and no person (source.pooler, thresholds.comparison_gate:
        # auto): no boundary between tasks inside the users' pause. Its steps are in the timeline, in order.
        start, end = (datetime.fromisoformat(report[k]) for k in ("freeze_start", "freeze_end"))
        freeze = {t["task"] for t in report["timeline"] if start <= datetime.fromisoformat(t["start"]) <= end}
        assert freeze == {
            "cutover_at_pooler: compare_changes",
            "cutover_at_pooler: large_objects",  # copy_large_objects, beside the comparison, in a thread
            "cutover_at_pooler: promote_and_switch",
        }, report["timeline"]
        steps = {t["task"].removeprefix("cutover_at_pooler: "): t for t in report["timeline"] if ": " in t["task"]}
        assert len(steps) == 4, steps
        fenced, promoted = steps["fence_source_and_catch_up"], steps["promote_and_switch"]
        for beside in (steps["compare_changes"], steps["large_objects"]):
            assert fenced["end"] <= beside["start"] and beside["end"] <= promoted["start"], steps
        assert all(t["seconds"] >= 0 for t in report["timeline"])
        png = Path(os.environ["FERRY_REPORT_DIR"], "d_day", f"{stem}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(report["comparison"]) == 8 and all(c["equal"] for c in report["comparison"])
        gift_cards = next(c for c in report["comparison"] if c["table"] == "public.gift_cards")
        assert {"equal": True, "rows_source": 40, "rows_target": 40, "freeze": "tail"} == {
            k: gift_cards[k] for k in ("equal", "rows_source", "rows_target", "freeze")
        }
        # Compared live before the fence; in the freeze only what changed since (the change capture).
        assert all(c["freeze"] == "tail" and c["live_at"] < c["freeze_at"] for c in report["comparison"])
        assert {"create_capture_slot", "drop_capture_slot"} <= {e["action"] for e in report["ledger"]}
        for conn in (source, target):  # dropped by D-day after the cutover
            assert (
                conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%capture'").fetchone()[0]
                == 0
            )
        # What replication does not carry: every large object copied (md5 verified), the view refreshed.
        assert report["large_objects_copied"] == source.execute("SELECT count(*) FROM documents").fetchone()[0] > 0
        assert report["materialized_views"] == ["public.customer_revenue"]
        # Refreshed on the target: its rows are what the view's query gave there at the refresh, while the old app
        # went on writing through the pooler (the source's is as seeded).
        assert target.execute(
            "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'customer_revenue'"
        ).fetchone() == (True,)
        (refreshed,) = target.execute("SELECT count(*) FROM customer_revenue").fetchone()
        assert active_before <= refreshed <= target.execute(active).fetchone()[0]
        assert report["webhooks"]["delivered"] == 3 and report["sequences_set"] >= 4
        assert report["reverse_replication"] == load_plan().reverse_subscription
        assert len(report["dns_changes"]) == 3  # hooks to the recorder, then both records to AWS
        assert s3.get_object(Bucket="ferry-stand-ledger", Key=f"ferry/stand-saas/reports/{stem}.md")["Body"].read()
        assert s3.get_object(Bucket="ferry-stand-ledger", Key=f"ferry/stand-saas/reports/{stem}.png")["Body"].read()
        reports = "".join(p.read_text() for p in Path(os.environ["FERRY_REPORT_DIR"], "d_day").glob("*.[jm][sd]*"))
        assert stem in reports and not [secret for secret in stand_secrets if secret in reports]

        # Clear and re-run every task of the D-day run, gates answered again: each changes nothing.
        # The pre-flight checks look at the world before D-day: after it, "old_app answers" fails, as it must.
        rerun = rerun_each_task(ROOT_DAGS, "ferry_d_day", gates, may_fail=("preflight.",))
        assert len(rerun) == len(run.get_task_instances())
        assert {t for t, state in rerun.items() if state != "success"} <= {
            "preflight.check_connections",
            "preflight.check_replication_health",
            "preflight.go_no_go_report",
            "revert_freeze",  # skipped again: the application reaches the new side, not the freeze's to revert
        }
        assert rerun["revert_freeze"] == "skipped"
        # fence_target again after the promotion changes nothing: the serving target is never fenced again.
        assert target.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'ferry_fence'").fetchone() == (0,)

        assert all(value == "new-lb.stand.example.net" for value, _ in records(stand).values())
        got = [
            json.loads(base64.b64decode(e["body_b64"]))["id"]
            for e in (json.loads(line) for line in (stand.dir / "apps" / "new_app.jsonl").read_text().splitlines())
        ]
        assert got == [f"dday_{i}" for i in range(3)]
        with app_connection(stand, "target") as app:  # the new primary takes writes, without key conflicts
            app.execute("INSERT INTO customers (email, name, country) VALUES ('after@example.com', 'A', 'NL')")
        for table in ("customers", "invoices", "events"):
            assert (
                source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                <= target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            )

        # The reverse replication D-day set up streams the new side's writes back to the old database.
        plan = load_plan()
        wait_until(
            lambda: (
                source.execute("SELECT count(*) FROM customers WHERE email = 'after@example.com'").fetchone() == (1,)
            ),
            "the target's new customer on the old source",
        )
        name = plan.reverse_subscription

        # ferry_decommission: refused while the reverse replication is broken (nothing changed), then it retires
        # the old side.
        source.execute(f"ALTER SUBSCRIPTION {name} DISABLE")
        with GateAnswerer({"gate_decommission": "Approve"}) as answerer:
            refused = run_dag(ROOT_DAGS, "ferry_decommission")
        states = {ti.task_id: ti.state for ti in refused.get_task_instances()}
        assert refused.state == "failed" and states["check_reverse_replication"] == "failed", states
        assert answerer.answered == [] and states["stop_reverse_replication"] == "upstream_failed"
        reverse = source.execute("SELECT subconninfo FROM pg_subscription WHERE subname = %s", (name,)).fetchall()
        assert len(reverse) == 1 and "sslmode=verify-full" in reverse[0][0]  # 17 back to 16, SSL verified
        source.execute(f"ALTER SUBSCRIPTION {name} ENABLE")
        wait_until(
            lambda: (
                source.execute(
                    "SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL", (name,)
                ).fetchone()
                == (1,)
            ),
            "the reverse apply worker",
        )
        # It ends the reverse replication caught up: a write the new side took just before, held up on the old
        # side (its apply worker waits on a lock) until the decommission's last step has begun, still arrives.
        blocker = PostgresPair().admin(stand, "source")
        blocker.autocommit = False
        blocker.execute("LOCK TABLE customers IN SHARE MODE")  # the reverse apply worker's INSERT waits
        with app_connection(stand, "target") as app:
            app.execute("INSERT INTO customers (email, name, country) VALUES ('last@example.com', 'L', 'NL')")
        watcher = PostgresPair().admin(stand, "target")
        release = threading.Thread(target=release_once_waited_for, args=(watcher, blocker), daemon=True)
        release.start()
        capfd.readouterr()
        with GateAnswerer({"gate_decommission": "Approve"}) as answerer:
            retired = run_dag(ROOT_DAGS, "ferry_decommission")
        release.join(timeout=60)
        watcher.close()
        said = "".join(capfd.readouterr())
        confirmed = re.search(r"The old source confirmed \S+ \(its slot at \S+\) [^\n]*", said)
        assert confirmed and "s of waiting" in confirmed.group(0), confirmed
        assert retired.state == "success", {ti.task_id: ti.state for ti in retired.get_task_instances()}
        assert [task for task, _ in answerer.answered] == ["gate_decommission"]
        assert source.execute("SELECT count(*) FROM customers WHERE email = 'last@example.com'").fetchone() == (1,)
        assert source.execute("SELECT count(*) FROM pg_subscription WHERE subname = %s", (name,)).fetchone() == (0,)
        assert target.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone() == (
            0,
        )
        assert target.execute(
            "SELECT count(*) FROM pg_publication WHERE pubname = %s", (plan.reverse_publication,)
        ).fetchone() == (0,)
        # The old database keeps refusing the application's writes: nobody reads it any more.
        with app_connection(stand, "source") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/after-decommission', now())")
        assert {"drop_reverse_replication", "retire_source"} <= {
            r.action for r in Ledger(plan).records() if r.run_id == retired.run_id
        }
        rerun = rerun_each_task(ROOT_DAGS, "ferry_decommission", {"gate_decommission": "Approve"}, ("check_reverse",))
        assert {t for t, state in rerun.items() if state != "success"} == {"check_reverse_replication"}

        # After the decommission, ferry_rollback refuses every step: the old side is retired. Nothing changes.
        ledger, dns = len(Ledger(plan).records()), records(stand)
        capfd.readouterr()
        refused = run_dag(ROOT_DAGS, "ferry_rollback")
        said = "".join(capfd.readouterr())
        states = {ti.task_id: ti.state for ti in refused.get_task_instances()}
        assert refused.state == "failed" and set(states.values()) == {"failed", "skipped"}, states
        assert "ferry_decommission retired the old side" in said and "fix forward on the new side" in said
        assert len(Ledger(plan).records()) == ledger and records(stand) == dns

    finally:
        load(stand, "stop")
        assert run_dag(TEST_DAGS, "ferry_test_vms_start").state == "success"  # D-day stopped the old app
        load(stand, "stop")
        PgBouncer().reset(stand)
        ReplicationHook("ferry_source", "saas").remove_fence()
        source.execute("DELETE FROM page_views WHERE path IN ('/dry-run', '/through-the-pooler')")
        source.execute("DELETE FROM customers WHERE email IN ('after@example.com', 'last@example.com')")
        source.execute("DROP TABLE IF EXISTS gift_cards")
        restore_new_cluster()
        assert run_dag(TEST_DAGS, "ferry_test_dns_restore").state == "success"
        assert records(stand) == original


def test_rollback_after_cutover_brings_back_every_write_the_new_side_took(
    stand, source, target, after_week_prior, stand_secrets, capfd
):
    """D-day to the end (DNS switched, reverse replication on), the application then writes on the new side;
    ferry_rollback refuses, and ferry_rollback_after_cutover gives the service back with every one of those
    writes on the old database and every webhook recorded meanwhile delivered to the old app, once."""
    import base64
    import json

    import httpx
    import psycopg
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from ferry.hooks.pooler import PoolerHook
    from tests.integration.conftest import GateAnswerer, app_connection
    from tests.integration.test_aws_side import records

    s3 = aws(stand, "s3")
    for obj in s3.list_objects_v2(Bucket="ferry-stand-webhooks").get("Contents", []):
        s3.delete_object(Bucket="ferry-stand-webhooks", Key=obj["Key"])
    for app in ("new_app", "old_app"):
        (stand.dir / "apps" / f"{app}.jsonl").unlink(missing_ok=True)
    original = records(stand)
    apps = KubernetesHook(conn_id="kube_stand").apps_v1_client
    plan = load_plan()
    name = plan.reverse_subscription
    d_day_gates = {"gate_go_no_go": "Approve", "gate_comparison": "Approve", "gate_point_of_no_return": "Approve"}
    (renamed,) = source.execute("SELECT name FROM customers WHERE id = 3").fetchone()
    gates = {"gate_go_no_go": "Approve", "gate_comparison": "Approve", "gate_restore_dns": "Approve"}
    try:
        assert run_dag(ROOT_DAGS, "ferry_week_prior").state == "success"
        assert run_dag(ROOT_DAGS, "ferry_day_before").state == "success"
        assert httpx.post(f"http://127.0.0.1:{stand.port(7)}/webhooks/stripe", json={"id": "dday"}).status_code == 202
        with GateAnswerer(d_day_gates):
            assert run_dag(ROOT_DAGS, "ferry_d_day").state == "success"
        source_conn = ReplicationHook("ferry_source", "saas").connection
        target_conn = ReplicationHook("ferry_target", "saas").connection
        pooler = PoolerHook(plan)
        assert (pooler.entry()["host"], pooler.entry()["port"]) == (target_conn.host, target_conn.port)

        # The new side serves: the application writes there (inserts, an update, a delete; sequences used).
        with app_connection(stand, "target") as app:
            new_ids = [
                app.execute(
                    "INSERT INTO customers (email, name, country) VALUES (%s, 'new side', 'NL') RETURNING id",
                    (f"new{i}@example.com",),
                ).fetchone()[0]
                for i in range(25)
            ]
            app.execute("UPDATE customers SET name = 'renamed on the new side' WHERE id = 3")
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/new-side', now())")
        with as_ferry(target, "target"):  # a large object made on the new side: replication does not carry it
            (new_lo,) = target.execute("SELECT lo_from_bytea(0, 'new side')").fetchone()
        for i in range(2):  # webhooks the recorder keeps during the way back
            assert (
                httpx.post(f"http://127.0.0.1:{stand.port(7)}/webhooks/stripe", json={"id": f"back_{i}"}).status_code
                == 202
            )

        # ferry_rollback would lose those writes: every step refuses, nothing changes.
        ledger = len(Ledger(plan).records())
        refused = run_dag(ROOT_DAGS, "ferry_rollback")
        assert refused.state == "failed"
        refusals = {ti.task_id: ti.state for ti in refused.get_task_instances()}
        assert set(refusals.values()) == {"failed", "skipped"}, refusals  # skipped: the undo_all_stages steps
        assert refusals["unfence_source"] == refusals["restore_dns"] == "failed"
        assert len(Ledger(plan).records()) == ledger
        assert source.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'ferry_fence'").fetchone()[0] > 0

        # A dry run changes nothing either.
        with GateAnswerer(gates):
            dry = run_dag(ROOT_DAGS, "ferry_rollback_after_cutover", conf={"dry_run": True})
        assert dry.state == "success", {ti.task_id: ti.state for ti in dry.get_task_instances()}
        assert len(Ledger(plan).records()) == ledger

        # A migration run on the new side only: a table created there, holding a row, outside the reverse
        # publication. The way back would leave the row behind: the check refuses, naming the fix; nothing
        # changes. Once fixed as it says, the row comes back with the rest.
        with as_ferry(target, "target"):  # the migration run on the new side as the RDS master user
            target.execute("CREATE TABLE coupons (id bigint PRIMARY KEY, code text NOT NULL)")
            target.execute("INSERT INTO coupons VALUES (1, 'NEW-SIDE')")
        capfd.readouterr()
        with GateAnswerer(gates):
            blocked = run_dag(ROOT_DAGS, "ferry_rollback_after_cutover")
        states = {ti.task_id: ti.state for ti in blocked.get_task_instances()}
        assert blocked.state == "failed" and states["check_reverse_replication"] == "failed", states
        said = "".join(capfd.readouterr())
        assert "public.coupons: created on the new side since the cutover, holding rows" in said
        assert f"ALTER SUBSCRIPTION {name} REFRESH PUBLICATION on the old source" in said
        assert len(Ledger(plan).records()) == ledger
        with as_ferry(source, "source"):
            source.execute("CREATE TABLE coupons (id bigint PRIMARY KEY, code text NOT NULL)")
        target.execute(f"ALTER PUBLICATION {plan.reverse_publication} ADD TABLE coupons")
        source.execute(f"ALTER SUBSCRIPTION {name} REFRESH PUBLICATION")
        deadline = time.monotonic() + 120  # its rows are copied, then it streams (the check refuses until then)
        while source.execute(
            "SELECT count(*) FROM pg_subscription_rel WHERE srrelid = 'coupons'::regclass AND srsubstate = 'r'"
        ).fetchone() != (1,):
            assert time.monotonic() < deadline, "the reverse subscription did not copy public.coupons in 120 s"
            time.sleep(0.5)

        # Stopped half-way (the comparison's gate rejected): the target is fenced, the old side still fenced and
        # still receiving through the reverse replication; nothing is lost, and a new run resumes from there.
        with GateAnswerer(gates | {"gate_comparison": "Reject"}):
            stopped = run_dag(ROOT_DAGS, "ferry_rollback_after_cutover")
        halted = {ti.task_id: ti.state for ti in stopped.get_task_instances()}
        assert stopped.state == "failed" and halted["fence_target"] == "success", halted
        assert halted["stop_reverse_replication"] == "upstream_failed", halted
        assert source.execute("SELECT count(*) FROM pg_subscription WHERE subname = %s", (name,)).fetchone() == (1,)
        with app_connection(stand, "target") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/fenced', now())")

        with GateAnswerer(gates) as answerer:
            run = run_dag(ROOT_DAGS, "ferry_rollback_after_cutover")
        assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
        assert [task for task, _ in answerer.answered] == list(gates)

        # Every write the new side took is on the old database.
        found = source.execute("SELECT id, email, name FROM customers WHERE id = ANY(%s) ORDER BY id", (new_ids,))
        assert [r[0] for r in found.fetchall()] == sorted(new_ids)
        assert source.execute("SELECT name FROM customers WHERE id = 3").fetchone() == ("renamed on the new side",)
        assert source.execute("SELECT count(*) FROM page_views WHERE path = '/new-side'").fetchone() == (1,)
        assert source.execute("SELECT id, code FROM coupons").fetchall() == [(1, "NEW-SIDE")]
        assert source.execute("SELECT lo_get(%s)", (new_lo,)).fetchone() == (b"new side",)  # its large object
        # The old side takes writes again, its sequences past the new side's; the new side takes none.
        with app_connection(stand, "source") as app:
            again = app.execute(
                "INSERT INTO customers (email, name, country) VALUES ('back@example.com', 'B', 'NL') RETURNING id"
            ).fetchone()[0]
        assert again > max(new_ids)
        # The old app's pooler points at the old database again, resumed: its writes land there.
        entry = pooler.entry()
        assert (entry["host"], entry["port"], entry["paused"]) == (source_conn.host, source_conn.port, False)
        pooled = [(r.run_id, r.task, r.action) for r in Ledger(plan).records() if r.action.endswith("_pooler")]
        assert (stopped.run_id, "pause_pooler", "pause_pooler") in pooled  # paused by the run stopped at the gate
        assert {(t, a) for i, t, a in pooled if i == run.run_id} == {
            ("restore_pooler", "repoint_pooler"),
            ("restore_pooler", "resume_pooler"),
        }
        with psycopg.connect(PgBouncer().dsn(stand), autocommit=True, prepare_threshold=None) as old_app:
            old_app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/pooler-back', now())")
        assert source.execute("SELECT count(*) FROM page_views WHERE path = '/pooler-back'").fetchone() == (1,)
        with app_connection(stand, "target") as app, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/fenced', now())")
        assert source.execute("SELECT count(*) FROM pg_subscription WHERE subname = %s", (name,)).fetchone() == (0,)
        assert target.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone() == (
            0,
        )
        assert records(stand) == original
        assert {
            d.metadata.name: d.spec.replicas
            for d in apps.list_namespaced_deployment("saas").items
            if d.metadata.name != "webhook-recorder"  # keeps recording: it is the way back's too
        } == {"web": 0, "sidekiq": 0, "pgbouncer": 0}
        assert httpx.get(f"http://127.0.0.1:{stand.port(8)}/healthz").status_code == 200
        # The webhook the new app took is not sent to the old one again; those recorded meanwhile are, once.
        got = [
            json.loads(base64.b64decode(json.loads(line)["body_b64"]))["id"]
            for line in (stand.dir / "apps" / "old_app.jsonl").read_text().splitlines()
        ]
        assert got == ["back_0", "back_1"]
        stem = "rollback_after_cutover__" + re.sub(r"[^A-Za-z0-9_.-]", "_", run.run_id)
        report = json.loads(Path(os.environ["FERRY_REPORT_DIR"], "rollback_after_cutover", f"{stem}.json").read_text())
        assert report["freeze_s"] > 0 and report["comparison"] and all(c["equal"] for c in report["comparison"])
        assert not [secret for secret in stand_secrets if secret in json.dumps(report)]

        # Each step again: each changes nothing. The check refuses (no reverse replication is left) and the
        # comparison finds the old side moved on (it serves again, and took the write above): read-only, both.
        rerun = rerun_each_task(ROOT_DAGS, "ferry_rollback_after_cutover", gates, ("check_reverse", "compare_"))
        refused = {t for t, state in rerun.items() if state != "success"}
        assert "check_reverse_replication" in refused and all(t.startswith(("check_", "compare_")) for t in refused)
        assert got == [
            json.loads(base64.b64decode(json.loads(line)["body_b64"]))["id"]
            for line in (stand.dir / "apps" / "old_app.jsonl").read_text().splitlines()
        ]
    finally:
        load(stand, "stop")  # the VM's load unit, started again by start_vm_services
        PgBouncer().reset(stand)
        source.execute("DELETE FROM page_views WHERE path = '/pooler-back'")
        source.execute("DELETE FROM customers WHERE email = 'back@example.com' OR email LIKE 'new%@example.com'")
        source.execute("UPDATE customers SET name = %s WHERE id = 3", (renamed,))
        source.execute("DELETE FROM page_views WHERE path = '/new-side'")
        source.execute("DROP TABLE IF EXISTS coupons")
        source.execute(
            "SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m WHERE NOT EXISTS "
            "(SELECT 1 FROM documents d WHERE d.content = m.oid)"
        )
        assert run_dag(TEST_DAGS, "ferry_test_vms_start").state == "success"
        ReplicationHook("ferry_source", "saas").remove_fence()
        restore_new_cluster()
        assert run_dag(TEST_DAGS, "ferry_test_dns_restore").state == "success"
        assert records(stand) == original
