"""The Ferry page in the Airflow UI: the migration at a glance, read only, behind the UI's own login.

Served by Airflow's API server (the plugin in ``plugins/ferry_ui_plugin.py`` mounts :data:`app` at ``/ferry`` and
adds "Ferry" to the UI's navigation). One page, refreshed every 30 s, and the same as JSON (``/ferry/state.json``):

- the stages in the runbook's order: done (the ledger's completion record), running, failed, undone (a rollback
  after it), not started;
- the replication now: each direction's subscription (apply worker, apply and sync errors) and slot (lag in bytes
  and seconds, retained WAL), and every slot of Ferry's with the WAL it keeps;
- the initial copy: tables ready of those subscribed, and per table being copied rows and bytes of the source's
  estimate, the rate and an ETA (the sensor's own words);
- the last pre-flight's verdict and its failing checks;
- every gate waiting for an answer, with a link to it;
- the next step.

It changes nothing: it reads the ledger (S3), both databases (``SELECT`` only) and Airflow's metadata. Each part that
cannot be read says so (the error's kind and first line, secrets redacted) and the others still show.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

STAGES = [
    "ferry_preflight",
    "ferry_week_prior",
    "ferry_day_before",
    "ferry_d_day",
    "ferry_rollback",
    "ferry_rollback_after_cutover",
    "ferry_decommission",
]
FORWARD = ["ferry_week_prior", "ferry_day_before", "ferry_d_day", "ferry_decommission"]
ROLLBACKS = ("ferry_rollback", "ferry_rollback_after_cutover")
REFRESH_S = 30

app = FastAPI(title="Ferry", docs_url=None, redoc_url=None, openapi_url=None)


async def logged_in(request: Request) -> Any:
    """The UI's own login: its token (the ``_token`` cookie, or a bearer header), checked by Airflow's auth manager."""
    from airflow.api_fastapi.core_api.security import get_user

    header = request.headers.get("authorization", "")
    from fastapi.security import HTTPAuthorizationCredentials

    bearer = (
        HTTPAuthorizationCredentials(scheme="Bearer", credentials=header.split(" ", 1)[1])
        if header.lower().startswith("bearer ")
        else None
    )
    return await get_user(request, None, bearer)


def _said(err: BaseException, secrets: list[str]) -> str:
    from ferry.redaction import redact

    first = (str(err).strip().splitlines() or [""])[0][:300]
    return redact(f"{type(err).__name__}: {first}", secrets)


def _part(state: dict[str, Any], name: str, read: Callable[[], Any], secrets: list[str]) -> None:
    try:
        state[name] = read()
    except Exception as err:  # noqa: BLE001 - one part unreadable: said there, the others still shown
        state[name] = {"unavailable": _said(err, secrets)}


def migration_state() -> dict[str, Any]:
    """Everything the page shows, as data (read only)."""
    from ferry.plan import load_plan

    state: dict[str, Any] = {"at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        plan = load_plan(_plan_variable())
    except Exception as err:  # noqa: BLE001 - the plan does not load: the page says why, nothing else to read
        state["plan"] = {"unavailable": _said(err, [])}
        return state
    secrets = _secrets(plan)
    state["plan"] = {"name": plan.name, "source": plan.source.database, "target": plan.target.database}
    _part(state, "airflow", _airflow_runs, secrets)
    _part(state, "ledger", lambda: _ledger(plan), secrets)
    _part(state, "replication", lambda: _replication(plan), secrets)
    _part(state, "initial_copy", lambda: _initial_copy(plan), secrets)
    state["stages"] = _stages(state)
    state["preflight"] = _preflight(state)
    state["gates"] = (state["airflow"] or {}).get("gates", []) if "unavailable" not in state["airflow"] else []
    state["next"] = _next_step(state)
    return state


def _plan_variable() -> str | None:
    """The Airflow Variable ``ferry_plan`` (as the tasks read it), else None: the environment's plan."""
    from airflow.sdk import Variable

    from ferry.plan import PLAN_VARIABLE

    try:
        return Variable.get(PLAN_VARIABLE, default=None)
    except Exception:  # noqa: BLE001 - the Variable cannot be read here: the environment's plan, as at parse time
        return None


def _secrets(plan: Any) -> list[str]:
    try:
        from ferry.redaction import plan_secrets

        return plan_secrets(plan)
    except Exception:  # noqa: BLE001 - nothing to redact with; messages are cut to their first line anyway
        return []


def _airflow_runs() -> dict[str, Any]:
    """Per stage, its latest run (state, start, end, conf, failed tasks); the gates waiting for an answer."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    runs: dict[str, Any] = {}
    gates = []
    with create_session() as session:
        for dag_id in STAGES:
            run = session.scalars(
                select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
            ).first()
            if run is None:
                continue
            failed = session.scalars(
                select(TaskInstance.task_id).where(
                    TaskInstance.dag_id == dag_id,
                    TaskInstance.run_id == run.run_id,
                    TaskInstance.state.in_(("failed", "upstream_failed")),
                )
            ).all()
            runs[dag_id] = {
                "run_id": run.run_id,
                "state": getattr(run.state, "value", run.state),
                "start": run.start_date.isoformat(timespec="seconds") if run.start_date else None,
                "end": run.end_date.isoformat(timespec="seconds") if run.end_date else None,
                "undo_all_stages": bool((run.conf or {}).get("undo_all_stages")),
                "failed_tasks": sorted(set(failed)),
            }
        waiting = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id.in_(STAGES), TaskInstance.state == "awaiting_input")
        ).all()
        for ti in waiting:
            gates.append(
                {
                    "dag_id": ti.dag_id,
                    "run_id": ti.run_id,
                    "task_id": ti.task_id,
                    "link": f"../dags/{ti.dag_id}/runs/{ti.run_id}/tasks/{ti.task_id}/required_actions",
                }
            )
    return {"runs": runs, "gates": gates}


def _ledger(plan: Any) -> dict[str, Any]:
    """What the ledger holds: each stage's completion, how many changes, the latest few."""
    from ferry.ledger import Action, Ledger

    records = Ledger(plan).records()
    complete = {r.target.name: r.finished_at for r in records if r.action == Action.STAGE_COMPLETE and r.done}
    return {
        "changes": len(records),
        "open_intents": sum(1 for r in records if not r.done),
        "complete": complete,
        "latest": [
            {"at": r.at, "stage": r.stage, "task": r.task, "action": str(r.action), "target": str(r.target)}
            for r in records[-8:]
        ][::-1],
    }


def _replication(plan: Any) -> dict[str, Any]:
    """Each direction's subscription and slot, and every slot of Ferry's on either side."""
    from ferry.hooks.replication import ReplicationHook

    source = ReplicationHook(plan.source.conn_id, plan.source.database)
    target = ReplicationHook(plan.target.conn_id, plan.target.database)
    links = [("forward", plan.subscription, target, source)]
    if plan.replication.reverse is not None:
        links.append(("reverse", plan.reverse_subscription, source, target))
    found: dict[str, Any] = {"links": [], "slots": []}
    for direction, name, subscriber, publisher in links:
        sub = subscriber.get_subscription_status(name)
        slot = publisher.get_slot_status(name)
        if sub is None and slot is None:
            continue
        lag_s = publisher.fetch_one("replication_lag_seconds", application_name=name)
        found["links"].append(
            {
                "direction": direction,
                "subscription": name,
                "worker_running": bool(sub and sub["worker_pid"]),
                "enabled": bool(sub and sub["enabled"]),
                "apply_errors": sub["apply_error_count"] if sub else None,
                "sync_errors": sub["sync_error_count"] if sub else None,
                "lag_bytes": slot["lag_bytes"] if slot else None,
                "lag_s": None if lag_s is None else lag_s["lag_s"],
                "retained_bytes": slot["retained_bytes"] if slot else None,
                "slot_active": bool(slot and slot["active"]),
            }
        )
    for side, hook in (("source", source), ("target", target)):
        for slot in hook.get_slots("ferry"):
            found["slots"].append({"side": side, **{k: slot[k] for k in ("slot_name", "active", "retained_bytes")}})
    return found


def _initial_copy(plan: Any) -> dict[str, Any]:
    """Tables ready of those subscribed; per table being copied, rows and bytes of the estimate, rate and ETA."""
    from ferry.hooks.replication import ReplicationHook
    from ferry.progress import copy_line

    target = ReplicationHook(plan.target.conn_id, plan.target.database)
    if target.get_subscription_status(plan.subscription) is None:
        return {"subscribed": 0, "ready": 0, "copying": []}
    tables = target.get_subscription_tables(plan.subscription)
    copying = target.fetch("copy_progress")
    lines = []
    if copying:
        source = ReplicationHook(plan.source.conn_id, plan.source.database)
        sizes = {r["qualified"]: r for r in source.fetch("table_sizes", schemas=plan.replication.schemas)}
        for row in copying:
            size = sizes.get(row["qualified"], {})
            lines.append(
                copy_line(
                    row["qualified"],
                    row["rows_done"] or 0,
                    size.get("rows_estimate") or 0,
                    row["bytes_done"] or 0,
                    size.get("bytes") or 0,
                    row["elapsed_s"],
                )
            )
    return {"subscribed": len(tables), "ready": sum(1 for t in tables if t["state"] == "r"), "copying": lines}


def _stages(state: dict[str, Any]) -> list[dict[str, Any]]:
    from ferry.taskgroups import DISPLAY_NAMES

    runs = (state.get("airflow") or {}).get("runs", {})
    complete = (state.get("ledger") or {}).get("complete", {})
    undone_after = [
        (r["end"] or "", r["undo_all_stages"], dag_id)
        for dag_id, r in runs.items()
        if dag_id in ROLLBACKS and r["state"] == "success"
    ]
    shown = []
    for dag_id in STAGES:
        run, done_at = runs.get(dag_id), complete.get(dag_id)
        status, when = "not started", None
        if run and run["state"] in ("running", "queued"):
            status, when = "running", run["start"]
        elif done_at:
            status, when = "done", done_at
            for end, everything, rollback in undone_after:
                if end > done_at and (dag_id == "ferry_d_day" or everything):
                    status, when = f"undone ({rollback})", end
        elif run and run["state"] == "failed":
            status, when = "failed", run["end"]
        elif run and run["state"] == "success":
            status, when = "done", run["end"]
        shown.append(
            {
                "dag_id": dag_id,
                "name": DISPLAY_NAMES.get(dag_id, dag_id),
                "status": status,
                "at": when,
                "failed_tasks": run["failed_tasks"] if run and status == "failed" else [],
                "link": f"../dags/{dag_id}" + (f"/runs/{run['run_id']}" if run else ""),
            }
        )
    return shown


def _preflight(state: dict[str, Any]) -> dict[str, Any]:
    run = (state.get("airflow") or {}).get("runs", {}).get("ferry_preflight")
    if run is None:
        return {"verdict": "never run"}
    verdict = {"success": "passed", "failed": "FAILED"}.get(run["state"], run["state"])
    return {
        "verdict": verdict,
        "at": run["end"] or run["start"],
        "failing": run["failed_tasks"],
        "run_id": run["run_id"],
    }


def _next_step(state: dict[str, Any]) -> str:
    stages = {s["dag_id"]: s for s in state.get("stages", [])}
    if state.get("gates"):
        g = state["gates"][0]
        return f"Answer the gate {g['task_id']} of {g['dag_id']} (Required Actions): it waits for a person."
    running = [s for s in stages.values() if s["status"] == "running"]
    if running:
        return f"{running[0]['name']} is running: watch its grid; the next step comes when it ends."
    failed = [s for s in stages.values() if s["status"] == "failed"]
    if failed:
        s = failed[-1]
        what = ", ".join(s["failed_tasks"]) or "a task"
        then = (
            " Before the promotion: trigger ferry_rollback; after it: ferry_rollback_after_cutover."
            if s["dag_id"] == "ferry_d_day"
            else " Fix what its log names, then trigger it again (every task is safe to run again)."
        )
        return f"{s['name']} failed at {what}: read that task's log (docs/failures.md).{then}"
    if state.get("preflight", {}).get("verdict") == "FAILED":
        return "The last pre-flight failed: fix what its failing checks name before the next stage."
    for dag_id in FORWARD:
        if not stages.get(dag_id, {}).get("status", "").startswith("done"):
            if dag_id == "ferry_decommission":
                return (
                    "The new side serves. Soak: watch the reverse replication here and in ferry_preflight; then "
                    "trigger ferry_decommission (the real point of no return)."
                )
            return f"Trigger {stages[dag_id]['name']} ({dag_id})."
    return "The migration is complete: the old side is retired."


# Rendering ------------------------------------------------------------------------------------------------------


def _human_bytes(n: Any) -> str:
    from ferry.progress import human_bytes

    return "—" if n is None else human_bytes(float(n))


def _when(iso: str | None) -> str:
    """An ISO time as the page shows it: to the second, in UTC."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def _unavailable(part: Any) -> str | None:
    return part.get("unavailable") if isinstance(part, dict) else None


def render(state: dict[str, Any]) -> str:
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='refresh' content='{REFRESH_S}'><title>Ferry</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a202c}h1{margin:0 0 .2rem}"
        "section{border:1px solid #cbd5e0;border-radius:8px;padding:.8rem 1rem;margin:.8rem 0}"
        "h2{font-size:1.05rem;margin:0 0 .5rem}table{border-collapse:collapse}td,th{padding:.2rem .7rem;"
        "text-align:left;border-bottom:1px solid #edf2f7}.done{color:#2f855a}.failed,.bad{color:#c53030;"
        "font-weight:600}.running{color:#2b6cb0;font-weight:600}.next{background:#ebf8ff;font-size:1.05rem}"
        ".muted{color:#718096}",
        "</style></head><body>",
    ]
    plan = state.get("plan", {})
    if _unavailable(plan):
        out.append(f"<h1>Ferry</h1><p class='bad'>The plan cannot be read: {e(plan['unavailable'])}</p></body></html>")
        return "".join(out)
    out.append(
        f"<h1>Ferry: {e(plan['name'])}</h1><p class='muted'>{e(plan['source'])} → {e(plan['target'])}; "
        f"read {e(_when(state['at']))}, refreshed every {REFRESH_S} s; this page changes nothing.</p>"
    )
    out.append(f"<section class='next' id='next'><h2>Next step</h2>{e(state['next'])}</section>")
    if state["gates"]:
        items = "".join(
            f"<li><a href='{e(g['link'])}' target='_top'>{e(g['dag_id'])} · {e(g['task_id'])}</a></li>"
            for g in state["gates"]
        )
        out.append(f"<section id='gates'><h2>Gates waiting for an answer</h2><ul>{items}</ul></section>")
    rows = "".join(
        f"<tr><td><a href='{e(s['link'])}' target='_top'>{e(s['name'])}</a></td>"
        f"<td class='{e(s['status'].split(' ')[0].replace('not', 'muted'))}'>{e(s['status'])}</td>"
        f"<td class='muted'>{e(_when(s['at']))}</td><td>{e(', '.join(s['failed_tasks']))}</td></tr>"
        for s in state["stages"]
    )
    problem = _unavailable(state.get("airflow")) or _unavailable(state.get("ledger"))
    out.append(
        "<section id='stages'><h2>Stages</h2>"
        + (f"<p class='bad'>Partly unreadable: {e(problem)}</p>" if problem else "")
        + f"<table><tr><th>stage</th><th>status</th><th>when</th><th>failed tasks</th></tr>{rows}</table></section>"
    )
    pf = state["preflight"]
    failing = f"; failing: {e(', '.join(pf['failing']))}" if pf.get("failing") else ""
    out.append(
        f"<section id='preflight'><h2>Last pre-flight</h2><span class='{'bad' if pf['verdict'] == 'FAILED' else ''}'>"
        f"{e(pf['verdict'])}</span> <span class='muted'>{e(_when(pf.get('at')))}</span>{failing}</section>"
    )
    rep = state.get("replication", {})
    if _unavailable(rep):
        body = f"<p class='bad'>Unreadable: {e(rep['unavailable'])}</p>"
    elif not rep["links"] and not rep["slots"]:
        body = "<p class='muted'>No replication yet (ferry_week_prior creates it).</p>"
    else:
        body = "<table><tr><th>direction</th><th>subscription</th><th>apply worker</th><th>errors</th>"
        body += "<th>lag</th><th>retained WAL</th></tr>"
        for link in rep["links"]:
            errors = (link["apply_errors"] or 0) + (link["sync_errors"] or 0)
            lag_s = "" if link["lag_s"] is None else f", {link['lag_s']:.1f} s"
            body += (
                f"<tr><td>{e(link['direction'])}</td><td>{e(link['subscription'])}</td>"
                f"<td class='{'done' if link['worker_running'] else 'bad'}'>"
                f"{'running' if link['worker_running'] else 'NOT running'}</td>"
                f"<td class='{'bad' if errors else ''}'>{link['apply_errors']} apply, {link['sync_errors']} sync</td>"
                f"<td>{e(_human_bytes(link['lag_bytes']))}{e(lag_s)}</td>"
                f"<td>{e(_human_bytes(link['retained_bytes']))}</td></tr>"
            )
        body += "</table><p class='muted'>Ferry's slots: " + (
            ", ".join(
                f"{e(s['slot_name'])} on the {e(s['side'])} ({'active' if s['active'] else 'inactive'}, keeps "
                f"{e(_human_bytes(s['retained_bytes']))})"
                for s in rep["slots"]
            )
            or "none"
        )
        body += "</p>"
    out.append(f"<section id='replication'><h2>Replication</h2>{body}</section>")
    copy = state.get("initial_copy", {})
    if _unavailable(copy):
        body = f"<p class='bad'>Unreadable: {e(copy['unavailable'])}</p>"
    elif not copy["subscribed"]:
        body = "<p class='muted'>No subscription.</p>"
    else:
        body = f"<p>{copy['ready']} of {copy['subscribed']} tables ready</p>"
        body += "".join(f"<p>Copying {e(line)}</p>" for line in copy["copying"])
    out.append(f"<section id='copy'><h2>Initial copy</h2>{body}</section>")
    ledger = state.get("ledger", {})
    if not _unavailable(ledger):
        latest = "".join(
            f"<tr><td class='muted'>{e(_when(r['at']))}</td><td>{e(r['stage'])}</td><td>{e(r['task'])}</td>"
            f"<td>{e(r['action'])}</td><td>{e(r['target'])}</td></tr>"
            for r in ledger["latest"]
        )
        out.append(
            f"<section id='ledger'><h2>Ledger</h2><p>{ledger['changes']} changes recorded"
            f"{', ' + str(ledger['open_intents']) + ' without an outcome' if ledger['open_intents'] else ''}.</p>"
            f"<table>{latest}</table></section>"
        )
    out.append("</body></html>")
    return "".join(out)


LoggedIn = Annotated[Any, Depends(logged_in)]


@app.get("/", response_class=HTMLResponse)
def page(user: LoggedIn) -> HTMLResponse:
    return HTMLResponse(render(migration_state()))


@app.get("/state.json")
def state_json(user: LoggedIn) -> JSONResponse:
    return JSONResponse(migration_state())


@app.exception_handler(HTTPException)
async def not_logged_in(request: Request, exc: HTTPException) -> HTMLResponse:
    """Not logged in (or the token expired): say so, with the way to the UI's login."""
    return HTMLResponse(
        f"<!doctype html><p>{html.escape(str(exc.detail))}: <a href='../auth/login' target='_top'>log in to Airflow</a>"
        " first; the Ferry page needs the same login as the UI.</p>",
        status_code=exc.status_code,
    )
