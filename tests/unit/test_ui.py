"""The Ferry page's judgement from what it read: each stage's status, the next step, an unreadable part said."""

from __future__ import annotations

from ferry.ui import _next_step, _preflight, _stages, render


def run(state: str, end: str = "2026-12-01T10:00:00+00:00", failed=(), undo_all: bool = False) -> dict:
    return {
        "run_id": f"manual__{end}",
        "state": state,
        "start": "2026-12-01T09:00:00+00:00",
        "end": end,
        "undo_all_stages": undo_all,
        "failed_tasks": list(failed),
    }


def judged(runs: dict, complete: dict, gates=()) -> dict:
    state = {
        "at": "2026-12-01T12:00:00+00:00",
        "plan": {"name": "acme", "source": "saas", "target": "saas"},
        "airflow": {"runs": runs, "gates": list(gates)},
        "ledger": {"complete": complete, "changes": 3, "open_intents": 0, "latest": []},
        "replication": {"unavailable": "OperationalError: connection refused"},
        "initial_copy": {"subscribed": 7, "ready": 5, "copying": ["public.events: 10 of ~20 rows (50%)"]},
        "gates": list(gates),
    }
    state["stages"] = _stages(state)
    state["preflight"] = _preflight(state)
    state["next"] = _next_step(state)
    return state


def statuses(state: dict) -> dict[str, str]:
    return {s["dag_id"]: s["status"] for s in state["stages"]}


def test_the_next_stage_to_trigger_after_week_prior():
    state = judged(
        {"ferry_preflight": run("success"), "ferry_week_prior": run("success")},
        {"ferry_week_prior": "2026-12-01T10:00:00+00:00"},
    )
    assert statuses(state)["ferry_week_prior"] == "done" and statuses(state)["ferry_d_day"] == "not started"
    assert state["next"] == "Trigger Ferry 4 · Day before (ferry_day_before)."
    page = render(state)
    assert "Unreadable: OperationalError: connection refused" in page  # the part that failed says so
    assert "5 of 7 tables ready" in page and "public.events: 10 of ~20 rows (50%)" in page


def test_a_waiting_gate_comes_first_then_a_failure_names_its_task_and_the_rollback():
    gate = {"dag_id": "ferry_d_day", "run_id": "r", "task_id": "gate_go_no_go", "link": "../dags/ferry_d_day"}
    state = judged({"ferry_d_day": run("running")}, {}, [gate])
    assert state["next"].startswith("Answer the gate gate_go_no_go of ferry_d_day")
    assert "ferry_d_day · gate_go_no_go" in render(state)
    failed = judged({"ferry_d_day": run("failed", failed=["cutover_at_pooler"])}, {})
    assert statuses(failed)["ferry_d_day"] == "failed"
    assert "failed at cutover_at_pooler" in failed["next"] and "ferry_rollback" in failed["next"]


def test_a_rollback_after_a_stage_marks_it_undone():
    complete = {"ferry_week_prior": "2026-12-01T08:00:00+00:00", "ferry_d_day": "2026-12-01T09:00:00+00:00"}
    only_d_day = judged({"ferry_rollback_after_cutover": run("success", end="2026-12-01T11:00:00+00:00")}, complete)
    assert statuses(only_d_day)["ferry_d_day"] == "undone (ferry_rollback_after_cutover)"
    assert statuses(only_d_day)["ferry_week_prior"] == "done"
    everything = judged({"ferry_rollback": run("success", end="2026-12-01T11:00:00+00:00", undo_all=True)}, complete)
    assert statuses(everything)["ferry_week_prior"] == "undone (ferry_rollback)"
    assert everything["next"] == "Trigger Ferry 2 · Week prior (ferry_week_prior)."


def test_the_soak_after_d_day_and_a_failed_preflight_first():
    complete = {d: "2026-12-01T09:00:00+00:00" for d in ("ferry_week_prior", "ferry_day_before", "ferry_d_day")}
    assert judged({}, complete)["next"].startswith("The new side serves. Soak:")
    failing = judged({"ferry_preflight": run("failed", failed=["preflight.check_privileges"])}, {})
    assert failing["preflight"]["verdict"] == "FAILED"
    assert "check_privileges" in render(failing)
