"""The plan model: the example and stand plans load; every kind of mistake is named with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ferry.plan import EXAMPLE_PLAN, PlanError, load_plan, load_runtime_plan, parse_plan, plan_source

ROOT = Path(__file__).resolve().parents[2]
STAND_PLAN = ROOT / "include" / "stand" / "plan.stand.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE_PLAN.read_text())


def problems_of(data: dict) -> dict[str, str]:
    with pytest.raises(PlanError) as caught:
        parse_plan(yaml.safe_dump(data), "test.yaml")
    return dict(caught.value.problems)


def test_example_plan_loads_with_names_derived_from_its_key():
    plan = load_plan(EXAMPLE_PLAN)
    assert plan.name == "acme-saas"
    assert plan.publication == plan.subscription == "ferry_acme_saas"
    assert plan.ledger_prefix == "ferry/acme-saas"
    assert plan.connections()["do_web_1"] == "ssh"
    assert plan.connections()["eks_acme"] == "kubernetes"
    assert plan.connections()["do_postgres"] == "postgres"


def test_stand_plan_loads():
    plan = load_plan(STAND_PLAN)
    assert plan.connections() == {
        "ferry_source": "postgres",
        "ferry_target": "postgres",
        "aws_default": "aws",
        "do_spaces": "s3",
        "vm_stand": "ssh",
        "kube_stand": "kubernetes",
        "new_app": "http",
        "old_app": "http",
        "old_pooler": "pgbouncer",
    }
    assert plan.pooler_vm is not None and plan.pooler_vm.name == plan.source.pooler.vm


def test_unknown_key_is_named_with_the_allowed_keys():
    data = example()
    data["source"]["databse"] = data["source"].pop("database")
    problems = problems_of(data)
    assert "unknown key 'databse'" in problems["source.databse"]
    assert "conn_id, database, app_roles, provider_superusers, pooler, keep_writing" in problems["source.databse"]
    assert "required" in problems["source.database"]


def test_wrong_type_is_named():
    data = example()
    data["thresholds"]["max_lag_bytes"] = "lots"
    assert "whole number" in problems_of(data)["thresholds.max_lag_bytes"]


def test_a_narrowed_comparison_needs_a_person_at_the_comparison_gate():
    data = example()
    data["thresholds"]["compare_mode"] = "counts"
    message = problems_of(data)["thresholds"]
    assert "compare_mode counts does not verify every row" in message and "comparison_gate: person" in message
    data["thresholds"]["comparison_gate"] = "person"
    assert parse_plan(yaml.safe_dump(data), "test.yaml").thresholds.comparison_gate == "person"
    data["thresholds"]["comparison_gate"] = "bot"
    assert "auto" in problems_of(data)["thresholds.comparison_gate"]


def test_dns_record_outside_its_zone():
    data = example()
    data["dns"]["records"][1]["name"] = "hooks.acme.example.org"
    message = problems_of(data)["dns"]
    assert "hooks.acme.example.org outside the zone acme.example.com" in message


def test_negative_replica_count():
    data = example()
    data["kubernetes"]["deployments"][1]["replicas"] = -2
    assert "at least 0" in problems_of(data)["kubernetes.deployments[1].replicas"]


@pytest.mark.parametrize(
    ("section", "path", "what"),
    [
        (lambda d: d["vms"], "vms", "host 'web-1'"),
        (lambda d: d["kubernetes"]["deployments"], "kubernetes.deployments", "deployment 'web'"),
        (lambda d: d["dns"]["records"], "dns.records", "record 'app.acme.example.com'"),
        (lambda d: d["ssm"]["parameters"], "ssm.parameters", "parameter '/acme/production/DATABASE_URL'"),
        (lambda d: d["rds"]["read_replicas"], "rds.read_replicas", "read replica 'acme-production-replica-1'"),
    ],
)
def test_duplicate_names(section, path, what):
    data = example()
    items = section(data)
    items.append(dict(items[0]))
    assert f"duplicate {what}" in problems_of(data)[path]


def test_empty_connection_id():
    data = example()
    data["target"]["conn_id"] = "  "
    assert "connection id is empty" in problems_of(data)["target.conn_id"]


def test_secure_parameter_needs_a_kms_key():
    data = example()
    del data["ssm"]["kms_key_id"]
    assert "kms_key_id" in problems_of(data)["ssm"]


def test_pgbouncer_must_be_a_deployment_in_scope():
    data = example()
    data["kubernetes"]["pgbouncer"] = "pgbouncer-main"
    assert "not one of the deployments" in problems_of(data)["kubernetes"]


def test_five_mistakes_make_one_error_naming_all_five():
    data = example()
    data["source"]["colour"] = "blue"  # unknown key
    data["thresholds"]["sequence_gap"] = "big"  # wrong type
    data["dns"]["records"][0]["name"] = "app.elsewhere.net"  # outside the zone
    data["kubernetes"]["deployments"][0]["replicas"] = -1  # negative replica count
    data["vms"][1]["name"] = "web-1"  # duplicate name
    with pytest.raises(PlanError) as caught:
        parse_plan(yaml.safe_dump(data), "five.yaml")
    message = str(caught.value)
    assert "five.yaml has 5 problem(s)" in message
    for path in ("source.colour", "thresholds.sequence_gap", "dns:", "kubernetes.deployments[0].replicas", "vms:"):
        assert f"  - {path}" in message


def test_key_given_twice_in_yaml_is_refused():
    text = EXAMPLE_PLAN.read_text().replace("name: acme-saas", "name: acme-saas\nname: other", 1)
    with pytest.raises(PlanError, match="key 'name' appears twice"):
        parse_plan(text)


def test_not_yaml_and_not_a_mapping():
    with pytest.raises(PlanError, match="not valid YAML"):
        parse_plan("name: [unclosed")
    with pytest.raises(PlanError, match="must be a YAML mapping"):
        parse_plan("- a list")


def test_missing_file_says_where_the_plan_comes_from(tmp_path):
    with pytest.raises(PlanError, match="set the Airflow Variable ferry_plan or FERRY_PLAN to its path or to the YAML"):
        load_plan(tmp_path / "nowhere.yaml")


def test_plan_source_precedence(monkeypatch):
    monkeypatch.delenv("FERRY_PLAN", raising=False)
    monkeypatch.delenv("AIRFLOW_VAR_FERRY_PLAN", raising=False)
    assert plan_source() == str(EXAMPLE_PLAN)
    monkeypatch.setenv("FERRY_PLAN", "/plans/env.yaml")
    assert plan_source() == "/plans/env.yaml"
    monkeypatch.setenv("AIRFLOW_VAR_FERRY_PLAN", "/plans/variable.yaml")
    assert plan_source() == "/plans/variable.yaml"
    assert plan_source("/plans/from-the-database.yaml") == "/plans/from-the-database.yaml"


def test_the_loader_takes_a_path(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_VAR_FERRY_PLAN", raising=False)
    (tmp_path / "plan.yaml").write_text(STAND_PLAN.read_text())
    monkeypatch.setenv("FERRY_PLAN", str(tmp_path / "plan.yaml"))
    assert load_plan().name == "stand-saas"  # parse time: the environment's choice
    assert load_runtime_plan().name == "stand-saas"  # run time: no Variable, so the same


def test_the_loader_takes_the_yaml_itself_at_parse_and_at_run_time(monkeypatch):
    monkeypatch.delenv("FERRY_PLAN", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_FERRY_PLAN", STAND_PLAN.read_text())  # the Variable holds the YAML
    assert load_plan().name == "stand-saas"
    assert load_runtime_plan().name == "stand-saas"
    flow = yaml.safe_dump(yaml.safe_load(STAND_PLAN.read_text()), default_flow_style=True, width=10**6)
    assert "\n" not in flow.strip() and load_plan(flow).name == "stand-saas"  # one line of flow YAML
    broken = STAND_PLAN.read_text().replace("name: stand-saas", "name: Stand_Saas")
    with pytest.raises(PlanError, match="the YAML of the Airflow Variable ferry_plan") as caught:
        load_plan(broken)
    assert [path for path, _ in caught.value.problems] == ["name"]


def test_a_role_cannot_be_the_application_and_kept_writing():
    data = example()
    data["source"]["keep_writing"] = ["acme_web", "acme_audit"]
    assert "acme_web in both app_roles and keep_writing" in problems_of(data)["source"]


def test_each_stage_names_the_sections_it_needs():
    from ferry.checks.plan_sections import check_plan_sections

    data = example()
    del data["kubernetes"]
    plan = parse_plan(yaml.safe_dump(data))
    d_day = check_plan_sections(plan, "ferry_d_day")
    assert d_day.status == "fail" and d_day.summary == "ferry_d_day cannot run without kubernetes"
    assert d_day.findings == ["ferry_d_day needs kubernetes (restore_deployments, restart_pgbouncer): missing"]
    ahead = check_plan_sections(plan, "ferry_preflight")  # the scheduled pre-flight warns for every stage
    assert ahead.status == "warn" and len(ahead.findings) == 3
    assert check_plan_sections(plan, "ferry_rollback").status == "pass"
    assert check_plan_sections(parse_plan(EXAMPLE_PLAN.read_text()), "ferry_d_day").status == "pass"


def test_the_freeze_budget_defaults_to_the_comparison_gate():
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    assert parse_plan(yaml.safe_dump(data), "test.yaml").thresholds.max_freeze_s == 30
    del data["thresholds"]["max_freeze_s"]
    assert parse_plan(yaml.safe_dump(data), "test.yaml").thresholds.freeze_budget_s == 30
    data["thresholds"]["comparison_gate"] = "person"  # a person answers inside the freeze
    assert parse_plan(yaml.safe_dump(data), "test.yaml").thresholds.freeze_budget_s == 900
    data["thresholds"]["max_freeze_s"] = 0
    with pytest.raises(PlanError) as err:
        parse_plan(yaml.safe_dump(data), "test.yaml")
    assert "thresholds.max_freeze_s" in str(err.value)


def test_a_pooler_needs_its_vm_and_the_reverse_replication():
    """The switch at the pooler: PgBouncer's file is edited over its VM's SSH connection, and from the promotion on
    the old app writes to the target, which only the reverse replication brings back on a rollback."""
    data = example()
    data["source"]["pooler"]["vm"] = "web-9"
    assert "source.pooler.vm web-9 is not one of vms[].name" in problems_of(data)[""]
    data = example()
    del data["replication"]["reverse"]
    assert "source.pooler needs replication.reverse" in problems_of(data)[""]
    data = example()
    data["source"]["pooler"]["config_path"] = "/etc/pgbouncer/pgbouncer.ini; rm -rf /"
    assert "source.pooler.config_path" in problems_of(data)
    data["source"]["pooler"] = {"admin_conn_id": "pgb", "database": "app", "vm": "web-1"}
    plan = parse_plan(yaml.safe_dump(data))
    assert plan.source.pooler.config_path == "/etc/pgbouncer/pgbouncer.ini" and plan.connections()["pgb"] == "pgbouncer"
