"""The go/no-go verdict and report, table scope and redaction: pure functions, no services."""

from __future__ import annotations

import yaml

from ferry.plan import EXAMPLE_PLAN, in_scope, parse_plan
from ferry.preflight import CheckResult
from ferry.redaction import redact
from ferry.report import render_preflight


def plan_with(**replication):
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["replication"] = {"schemas": ["public", "billing"], **replication}
    del data["source"]["pooler"]  # it needs the reverse replication, which this replication section leaves out
    return parse_plan(yaml.safe_dump(data))


TABLES = [{"schema": s, "table": t} for s, t in [("public", "users"), ("public", "logs"), ("billing", "users")]]


def test_scope_is_every_table_unless_listed_less_the_excluded():
    assert in_scope(plan_with(), TABLES) == TABLES
    assert in_scope(plan_with(exclude_tables=["public.logs"]), TABLES) == [TABLES[0], TABLES[2]]
    assert in_scope(plan_with(tables=["billing.users"]), TABLES) == [TABLES[2]]
    assert in_scope(plan_with(tables=["users"]), TABLES) == [TABLES[0], TABLES[2]]


def test_warnings_do_not_make_a_no_go():
    results = [
        CheckResult("connections", "pass", "all answer"),
        CheckResult("sequences", "warn", "one unowned", ["public.s"], "sync it"),
        CheckResult("schema_drift", "skip", "no schema yet"),
    ]
    go, markdown = render_preflight("acme-saas", results, "run-1", "2026-11-28T10:00:00+00:00")
    assert go
    assert markdown.startswith("# Ferry pre-flight: GO\n")
    assert "| sequences | WARN | one unowned |" in markdown
    assert "**What to do:** sync it" in markdown


def test_a_failed_check_makes_a_no_go_with_its_remedy():
    results = [
        CheckResult("connections", "pass", "all answer"),
        CheckResult("replica_identity", "fail", "1 table", ["public.t: ALTER TABLE public.t ..."], "add a key"),
    ]
    go, markdown = render_preflight("acme-saas", results, "run-2", "2026-11-28T10:00:00+00:00")
    assert not go
    assert markdown.startswith("# Ferry pre-flight: NO-GO\n")
    assert "failed: 1" in markdown
    assert "- public.t: ALTER TABLE public.t ..." in markdown
    assert "**What to do:** add a key" in markdown


def test_redact_replaces_every_secret_longest_first():
    text = "password=hunter2hunter2 and again hunter2hunter2, short=abc"
    assert redact(text, ["hunter2hunter2", "hunter2", "abc"]) == "password=*** and again ***, short=abc"


def test_extensions_are_judged_against_the_versions_the_target_offers():
    from ferry.preflight import extension_findings

    used = {"citext": "1.6", "postgis": "3.4.2", "hstore": "1.8", "pg_trgm": "1.6"}
    offered = {"citext": ["1.4", "1.5", "1.6"], "hstore": ["1.10"], "pg_trgm": ["1.5"]}
    findings, problems, warnings = extension_findings(used, offered)
    assert "citext 1.6: available on the target" in findings
    assert problems == [
        "postgis 3.4.2 is not available on the target",
        "pg_trgm 1.6: the target offers only older versions (1.5)",
    ]
    assert warnings == ["hstore 1.8 is offered on the target only as 1.10"]  # 1.10 is newer than 1.8
