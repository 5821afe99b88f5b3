"""Every DAG file imports, is documented and tagged, never catches up, and retries its tasks."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from ferry.plan import EXAMPLE_PLAN

APPROVAL_GATES = ("ApprovalOperator", "HITLOperator", "HITLBranchOperator", "HITLEntryOperator")


@pytest.fixture(scope="module")
def dagbag(dag_folder):
    return DagBag(dag_folder=str(dag_folder))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_dag_file_defines_a_dag(dagbag, dag_folder):
    files = {p.name for p in dag_folder.glob("*.py")}
    defined = {dag.fileloc.rsplit("/", 1)[-1] for dag in dagbag.dags.values()}
    assert files and files <= defined


def test_every_stage_dag_is_documented_tagged_and_does_not_catch_up(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "ferry" in dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, dag_id
        assert dag.catchup is False, dag_id


#: Tasks that do not retry, and why: inside D-day's write freeze a retry first waits its retry_delay, while
#: revert_freeze gives the service back at once.
NO_RETRIES = {("ferry_d_day", "fence_source_and_catch_up")}


def test_every_task_retries_except_approval_gates(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if any(cls.__name__ in APPROVAL_GATES for cls in type(task).__mro__):
                continue
            if (dag.dag_id, task.task_id) in NO_RETRIES:
                assert task.retries == 0 and task.doc_md
                continue
            assert task.retries >= 2, f"{dag.dag_id}.{task.task_id} retries {task.retries}"
            assert task.doc_md, f"{dag.dag_id}.{task.task_id} has no doc_md"


def test_preflight_reports_last_whatever_its_checks_ended_with(dagbag):
    dag = dagbag.dags["ferry_preflight"]
    assert dag.schedule == "@hourly"
    report = dag.get_task("go_no_go_report")
    assert report.trigger_rule == "all_done"
    assert {t.task_id for t in report.upstream_list} == {t.task_id for t in dag.tasks} - {"go_no_go_report"}


def test_preflight_schedule_comes_from_the_plan(dag_folder, tmp_path, monkeypatch):
    plan = tmp_path / "plan.yaml"
    plan.write_text(EXAMPLE_PLAN.read_text().replace('schedule: "@hourly"', 'schedule: "*/15 * * * *"'))
    monkeypatch.setenv("FERRY_PLAN", str(plan))
    assert DagBag(dag_folder=str(dag_folder)).dags["ferry_preflight"].schedule == "*/15 * * * *"


def test_a_bad_plan_fails_the_dag_import_listing_every_problem(dag_folder, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: Bad Name\nsource: {conn_id: '', database: app}\ntarget: {conn_id: t, database: app, colour: red}\n"
        "ledger: {bucket: b}\n"
    )
    monkeypatch.setenv("FERRY_PLAN", str(bad))
    errors = DagBag(dag_folder=str(dag_folder)).import_errors
    message = next(v for k, v in errors.items() if k.endswith("ferry_preflight.py"))
    assert "has 3 problem(s)" in message
    assert "name:" in message and "source.conn_id: connection id is empty" in message
    assert "target.colour: unknown key 'colour'" in message


def test_every_stage_offers_a_dry_run_and_d_day_its_tables_and_timeouts(dagbag):
    for dag_id in ("ferry_week_prior", "ferry_day_before", "ferry_d_day", "ferry_rollback"):
        params = dagbag.dags[dag_id].params
        assert params["dry_run"] is False, dag_id
        assert params.get_param("dry_run").schema["type"] == ["null", "boolean"]  # a switch, not required
    d_day = dagbag.dags["ferry_d_day"].params
    assert d_day["tables"] == [] and d_day["dns_weighted_steps"] == []
    # Empty timeouts leave each task's own, which the DAG sets: the form does not silently override them.
    assert d_day["catch_up_timeout_s"] is None and d_day["rollout_timeout_s"] is None
    assert d_day.get_param("catch_up_timeout_s").schema["minimum"] == 1
    task = dagbag.dags["ferry_d_day"].task_dict
    assert task["cutover_at_pooler"].timeout_s == 1800 and task["restore_deployments"].timeout_s == 600


def test_d_day_gates_are_approval_operators_in_runbook_order(dagbag):
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = dagbag.dags["ferry_d_day"]
    gates = [t.task_id for t in dag.topological_sort() if isinstance(t, ApprovalOperator)]
    # thresholds.comparison_gate: auto (the default): no person inside the write freeze, none between it and the
    # DNS switch; with the reverse replication the decision to keep the new side comes after the switch.
    assert gates == ["gate_go_no_go", "gate_point_of_no_return"]
    assert dag.get_task("switch_dns").upstream_task_ids == {"start_reverse_replication"}
    assert dag.get_task("gate_point_of_no_return").upstream_task_ids == {"write_report"}
    assert dag.get_task("mark_stage_complete").upstream_task_ids == {"gate_point_of_no_return"}
    # Everything slow on AWS is done before the go/no-go, while the old side serves: the new side ready (on a
    # fenced target), the read replicas, the large objects, the SSM values, the materialized views.
    before_go = {t.task_id for t in dag.get_task("gate_go_no_go").get_flat_relatives(upstream=True)}
    assert {
        "fence_target",
        "apply_ssm_cutover",
        "restore_deployments",
        "restart_pgbouncer",
        "smoke_test_new_app",
        "create_read_replicas",
        "copy_large_objects_ahead",
        "refresh_materialized_views_ahead",
    } <= before_go
    assert "fence_target" in {t.task_id for t in dag.get_task("restore_deployments").get_flat_relatives(upstream=True)}
    # With the stand's pooler and no person at the comparison, the whole freeze is one task.
    cutover = dag.get_task("cutover_at_pooler")
    assert cutover.upstream_task_ids == {"route_webhooks_to_recorder"}
    assert cutover.no_person_after and cutover.compare_whole


def test_a_failure_in_d_days_freeze_and_only_there_reverts_it(dagbag):
    """With the stand's pooler (and no person at the comparison): nothing is stopped, one task pauses the pooler,
    fences, catches up, compares, copies the large objects, promotes and resumes the pooler on the target (no task
    boundary in the users' pause). revert_freeze runs when it or the reverse replication's start failed, and never for
    a task after that: then the target may be serving."""
    dag = dagbag.dags["ferry_d_day"]
    revert = dag.get_task("revert_freeze")
    assert revert.trigger_rule == "one_failed"
    assert "stop_vm_services" not in dag.task_ids
    for gone in ("fence_source_and_catch_up", "compare_changes", "copy_large_objects"):
        assert gone not in dag.task_ids
    assert type(dag.get_task("cutover_at_pooler")).__name__ == "ReplicationCutoverAtPoolerOperator"
    assert dag.get_task("start_reverse_replication").upstream_task_ids == {"cutover_at_pooler"}
    assert revert.upstream_task_ids == {"cutover_at_pooler", "start_reverse_replication"}
    assert revert.fence_task_id == "cutover_at_pooler"
    assert dag.get_task("write_report").changes_task_id == "cutover_at_pooler"
    assert not revert.downstream_task_ids
    after = dag.get_task("start_reverse_replication").get_flat_relative_ids(upstream=False)
    assert not after & revert.upstream_task_ids
    assert dag.get_task("write_report").caught_up_task_id == "cutover_at_pooler"


def test_without_a_pooler_d_day_stops_the_old_app_for_the_freeze(dag_folder, monkeypatch, tmp_path):
    """The fallback: a plan without source.pooler stops the old app's units before the fence; revert_freeze also
    runs when that stop failed."""
    from pathlib import Path

    import yaml

    from ferry.plan import plan_source

    data = yaml.safe_load(Path(plan_source()).read_text())
    del data["source"]["pooler"]
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("FERRY_PLAN", str(tmp_path / "plan.yaml"))
    dag = DagBag(dag_folder=str(dag_folder)).dags["ferry_d_day"]
    assert type(dag.get_task("drop_subscription_and_sync_sequences")).__name__ == "ReplicationPromoteTargetOperator"
    assert dag.get_task("fence_source_and_catch_up").upstream_task_ids == {"stop_vm_services"}
    assert dag.get_task("revert_freeze").upstream_task_ids == {
        "stop_vm_services",
        "fence_source_and_catch_up",
        "compare_changes",
        "copy_large_objects",
        "drop_subscription_and_sync_sequences",
        "start_reverse_replication",
    }
    # Nothing slow and no person between the stop and the DNS switch: the promotion, the reverse replication, the
    # target's fence lifted, the switch.
    assert dag.get_task("unfence_target").upstream_task_ids == {"start_reverse_replication"}
    assert dag.get_task("switch_dns").upstream_task_ids == {"unfence_target"}
    between = dag.get_task("switch_dns").get_flat_relative_ids(upstream=True) - dag.get_task(
        "stop_vm_services"
    ).get_flat_relative_ids(upstream=True)
    assert between == {
        "stop_vm_services",
        "fence_source_and_catch_up",
        "compare_changes",
        "copy_large_objects",
        "drop_subscription_and_sync_sequences",
        "start_reverse_replication",
        "unfence_target",
    }


def test_a_plan_asking_a_person_at_the_comparison_puts_the_gate_before_the_promotion(dag_folder, monkeypatch, tmp_path):
    from pathlib import Path

    import yaml
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from ferry.plan import plan_source

    data = yaml.safe_load(Path(plan_source()).read_text())
    data["thresholds"]["comparison_gate"] = "person"
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("FERRY_PLAN", str(tmp_path / "plan.yaml"))
    dag = DagBag(dag_folder=str(dag_folder)).dags["ferry_d_day"]
    gates = [t.task_id for t in dag.topological_sort() if isinstance(t, ApprovalOperator)]
    assert gates == ["gate_go_no_go", "gate_comparison", "gate_point_of_no_return"]
    assert dag.get_task("gate_comparison").upstream_task_ids == {"compare_changes", "copy_large_objects"}
    assert dag.get_task("drop_subscription_and_sync_sequences").upstream_task_ids == {"gate_comparison"}
    assert not dag.get_task("compare_changes").no_person_after
    assert "gate_comparison" in dag.get_task("revert_freeze").upstream_task_ids  # a "no" gives the service back


def test_a_stage_whose_plan_lacks_a_section_it_needs_fails_at_import_naming_it(dag_folder, tmp_path, monkeypatch):
    """Before anything runs: not at create_read_replicas, after the subscription is already dropped."""
    import yaml

    from ferry.plan import EXAMPLE_PLAN

    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    del data["rds"], data["vms"], data["source"]["pooler"]
    plan = tmp_path / "no-rds.yaml"
    plan.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("FERRY_PLAN", str(plan))
    bag = DagBag(dag_folder=str(dag_folder))
    message = next(v for k, v in bag.import_errors.items() if k.endswith("ferry_d_day.py"))
    assert "has 2 problem(s)" in message
    assert "rds: ferry_d_day needs it (create_read_replicas); add it" in message
    assert "vms: ferry_d_day needs it (stop_vm_services); add it" in message
    assert {"ferry_preflight", "ferry_week_prior", "ferry_day_before", "ferry_rollback"} <= set(bag.dags)


def test_after_the_cutover_the_way_back_keeps_the_new_sides_writes(dagbag):
    """ferry_rollback's every step refuses while reverse replication runs; the way back after the cutover
    ends the reverse replication only after the target's fence, the catch-up and the comparison's gate, and
    unfences the old source only after that; decommission ends it only behind its gate."""
    rollback = dagbag.dags["ferry_rollback"]
    assert all(task.refuse_while_reverse for task in rollback.tasks)
    back = dagbag.dags["ferry_rollback_after_cutover"]
    stop = back.get_task("stop_reverse_replication")
    assert stop.require == "caught_up"
    assert {"fence_target", "wait_reverse_caught_up", "compare_report", "gate_comparison"} <= {
        t.task_id for t in stop.get_flat_relatives(upstream=True)
    }
    assert "stop_reverse_replication" in {
        t.task_id for t in back.get_task("unfence_source").get_flat_relatives(upstream=True)
    }
    assert not any(getattr(task, "refuse_while_reverse", False) for task in back.tasks)
    retire = dagbag.dags["ferry_decommission"].get_task("stop_reverse_replication")
    assert retire.require == "healthy"
    assert "gate_decommission" in {t.task_id for t in retire.get_flat_relatives(upstream=True)}
    d_day = dagbag.dags["ferry_d_day"]
    assert "cutover_at_pooler" in {
        t.task_id for t in d_day.get_task("start_reverse_replication").get_flat_relatives(upstream=True)
    }
    # The new app's pods come up before the freeze on a fenced target; the fence goes after the reverse slot exists.
    assert "fence_target" in {
        t.task_id for t in d_day.get_task("restore_deployments").get_flat_relatives(upstream=True)
    }
    assert "start_reverse_replication" in {
        t.task_id for t in d_day.get_task("switch_dns").get_flat_relatives(upstream=True)
    }


def test_every_task_id_a_task_is_wired_to_names_a_task_of_its_dag(dagbag):
    """Operators read other tasks' results by task id (``*_task_id`` parameters): each must name a task of the same
    DAG, or the result read is silently empty."""
    wrong = [
        f"{dag.dag_id}.{task.task_id}.{name} = {value!r}"
        for dag in dagbag.dags.values()
        for task in dag.tasks
        for name, value in vars(task).items()
        if name.endswith("_task_id") and isinstance(value, str) and value not in dag.task_ids
    ]
    assert wrong == []


def test_the_dag_list_reads_in_the_runbooks_order(dagbag):
    """The Airflow UI sorts its DAG list by display name: the stages read in the order an operator runs them."""
    runbook = [
        "ferry_preflight",
        "ferry_week_prior",
        "ferry_schema_watch",
        "ferry_day_before",
        "ferry_d_day",
        "ferry_rollback",
        "ferry_rollback_after_cutover",
        "ferry_decommission",
    ]
    assert set(runbook) == set(dagbag.dags)
    names = {dag_id: dag.dag_display_name for dag_id, dag in dagbag.dags.items()}
    assert sorted(names, key=names.get) == runbook


def test_no_trigger_form_field_is_marked_required(dagbag):
    """The form marks a field required (*) unless its type allows null; empty (or off) is the normal answer to
    every one of Ferry's, so each allows null, and each has a title."""
    for dag_id, dag in dagbag.dags.items():
        for name in dag.params:
            schema = dag.params.get_param(name).schema
            kinds = schema.get("type")
            assert isinstance(kinds, list) and "null" in kinds, (dag_id, name, kinds)
            assert schema.get("title"), (dag_id, name)
