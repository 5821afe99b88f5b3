"""Ferry's reports: one writer, and a pure renderer per kind of report.

:func:`write` puts every report in one place (``<report_dir>/<kind>/<name>__<run>.md``, the same
data as JSON beside it when given, other files such as the D-day chart, and a copy in the ledger
bucket when asked) and logs it. The renderers turn plain data into Markdown and know nothing of
Airflow, so they are unit-tested on their own.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from ferry.ledger import Action
from ferry.plan import Plan

FREEZE_START, FREEZE_END = Action.FENCE_SOURCE, (Action.DROP_SUBSCRIPTION, Action.SET_SEQUENCE)


def report_dir(plan: Plan) -> Path:
    """Where reports are written: the plan's ``report_dir``, ``$FERRY_REPORT_DIR``, or under ``$AIRFLOW_HOME``."""
    chosen = plan.report_dir or os.environ.get("FERRY_REPORT_DIR")
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "ferry-reports"


def stem(name: str, run_id: str) -> str:
    """A report file's name without its suffix: ``<name>__<run id, made safe for a file name>``."""
    return f"{name}__{re.sub(r'[^A-Za-z0-9_.-]', '_', run_id)}"


def write(
    plan: Plan,
    kind: str,
    context: Any,
    markdown: str,
    data: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    files: dict[str, bytes] | None = None,
    upload: bool = False,
) -> Path:
    """Write a report of ``kind`` for the run of ``context``; return the Markdown file's path.

    :param markdown: the report (already redacted).
    :param data: the same as JSON, written beside it.
    :param name: the file stem's first part (default: the DAG id); the run id follows.
    :param files: more files beside it, by suffix (``{".png": ...}``).
    :param upload: also copy every file to ``<ledger prefix>/reports/`` in the ledger bucket.
    """
    stem_ = stem(name or context["dag"].dag_id, context["run_id"])
    folder = report_dir(plan) / kind
    folder.mkdir(parents=True, exist_ok=True)
    contents = {".md": markdown.encode()}
    if data is not None:
        contents[".json"] = json.dumps(data, indent=2, default=str).encode()
    contents |= files or {}
    for suffix, content in contents.items():
        (folder / f"{stem_}{suffix}").write_bytes(content)
    if upload:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        s3 = S3Hook(aws_conn_id=plan.aws.conn_id)
        for suffix, content in contents.items():
            s3.load_bytes(
                content,
                key=f"{plan.ledger_prefix}/reports/{stem_}{suffix}",
                bucket_name=plan.ledger.bucket,
                replace=True,
            )
    path = folder / f"{stem_}.md"
    extra = ", ".join(s for s in contents if s != ".md")
    context["task"].log.info(  # the task's own logger: the report is in its log
        "Report written to %s%s%s\n%s",
        path,
        f" (and its {extra})" if extra else "",
        " and to the ledger bucket" if upload else "",
        markdown,
    )
    return path


def timeline(timings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each task's start, end and duration (seconds), in start order; mapped tasks named ``task[i]``."""
    rows = []
    for t in timings:
        start, end = datetime.fromisoformat(t["start"]), datetime.fromisoformat(t["end"])
        name = t["task"] if t.get("map_index", -1) in (-1, None) else f"{t['task']}[{t['map_index']}]"
        rows.append(
            {"task": name, "start": t["start"], "end": t["end"], "seconds": round((end - start).total_seconds(), 3)}
        )
    return sorted(rows, key=lambda r: (r["start"], r["task"]))


def freeze_window(records: list[Any]) -> tuple[float | None, str | None, str | None]:
    """Seconds from the fence to the target standing alone and writable (subscription dropped, sequences set)."""
    fence = next((r for r in records if r.action == FREEZE_START), None)
    writable = max((r.finished_at for r in records if r.action in FREEZE_END), default=None)
    if fence is None or writable is None:
        return None, fence.at if fence else None, writable
    seconds = (datetime.fromisoformat(writable) - datetime.fromisoformat(fence.at)).total_seconds()
    return round(seconds, 3), fence.at, writable


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def users_view(plan: Any, records: list[Any]) -> dict[str, Any]:
    """What the application's users went through in this run, from the ledger. With a pooler: how long the old
    app's queries waited in it (PAUSE to RESUME on the target). Without: the old app stopped, from its first unit's
    stop to the last DNS record switched (clients that cached the old answer wait up to its TTL more)."""
    if plan.source.pooler is not None:
        paused = next((r for r in records if r.action == Action.PAUSE_POOLER and r.done), None)
        resumed = next(
            (r for r in records if r.action == Action.RESUME_POOLER and r.done and paused and r.at >= paused.at), None
        )
        return {
            "switch": "pooler",
            "paused_at": paused.at if paused else None,
            "resumed_at": resumed.finished_at if resumed else None,
            "resumed_on": (resumed.after or {}).get("host") if resumed else None,
            "pause_s": _seconds(paused.at if paused else None, resumed.finished_at if resumed else None),
        }
    stopped = next((r for r in records if r.action == Action.STOP_UNIT), None)
    switched = max((r.finished_at for r in records if r.action == Action.SWITCH_RECORD and r.done), default=None)
    ttl = max((r.low_ttl for r in plan.dns.records), default=None) if plan.dns else None
    return {
        "switch": "stop",
        "stopped_at": stopped.at if stopped else None,
        "dns_switched_at": switched,
        "downtime_s": _seconds(stopped.at if stopped else None, switched),
        "plus_dns_ttl_s": ttl,
    }


def _users_line(users: dict[str, Any] | None) -> str:
    if not users:
        return "- users: not recorded"
    if users["switch"] == "pooler":
        return (
            f"- users: the old app's queries waited {users['pause_s']} s in its pooler (PAUSE to RESUME on "
            f"{users['resumed_on']}), none refused; then it served from the new database"
            if users["pause_s"] is not None
            else "- users: the pooler was not paused and resumed by this run"
        )
    return (
        f"- users: the old app was down {users['downtime_s']} s (its stop to the DNS switch), plus up to the DNS "
        f"TTL ({users['plus_dns_ttl_s']} s) for clients that cached the old answer"
        if users["downtime_s"] is not None
        else "- users: the old app was not stopped and switched by this run"
    )


def render_d_day(data: dict[str, Any]) -> str:
    """The D-day report as Markdown."""
    lag = data["replication_lag_at_fence"]
    lines = [
        f"# Ferry D-day report: {data['plan']}" + (" (DRY RUN: nothing was changed)" if data["dry_run"] else ""),
        "",
        f"- run: `{data['run_id']}`",
        f"- D-day so far: {data['dday_s']} s (first task start to this report)",
        f"- write freeze (fence to target writable): {data['freeze_window_s']} s "
        f"({data['freeze_start']} to {data['freeze_end']})",
        _users_line(data.get("users")),
        f"- fence LSN: {data['fence_lsn']}; replication lag at the fence: {lag['bytes']} bytes, "
        + (
            f"caught up after {lag['caught_up_after_s']} s"
            if lag["caught_up_after_s"] is not None
            else "caught up before this try of the wait (a re-run; see the first try's report)"
        ),
        f"- sequences set: {data['sequences_set']}",
        f"- materialized views refreshed on the target: {', '.join(data.get('materialized_views') or []) or 'none'}",
        f"- large objects copied: {data.get('large_objects_copied', 0)}",
        f"- read replicas created: {', '.join(data['read_replicas']) or 'none new'}",
        f"- webhooks: {data['webhooks']}",
        "- point of no return: "
        + (
            f"not the DNS switch: reverse replication ({data['reverse_replication']}) carries the new side's writes "
            "back to the old database; ferry_rollback_after_cutover until ferry_decommission"
            if data.get("reverse_replication")
            else "the DNS switch (no reverse replication)"
        ),
        f"- timeline chart: {data['chart']}",
        "",
        "## Timeline",
        "",
        "| task | start | end | seconds |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t['task']} | {t['start']} | {t['end']} | {t['seconds']} |" for t in data["timeline"]]
    lines += [
        "",
        "## Comparison: what was verified when",
        "",
        "| table | equal | rows source | rows target | live at | live s | carried | freeze | freeze at | freeze s "
        "| keys verified in freeze |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['table']} | {c['equal']} | {c['rows_source']} | {c['rows_target']} | {c.get('live_at') or '-'} "
        f"| {c.get('live_s') if c.get('live_s') is not None else '-'} | {c.get('carried', 0)} "
        f"| {c.get('freeze', 'full')} | {c.get('freeze_at') or '-'} | {c.get('freeze_s', c['seconds'])} "
        f"| {c.get('freeze_keys', 0)} |"
        for c in data["comparison"]
    ]
    lines += ["", "## DNS changes", ""] + [f"- {d['record']}: {d['to']}" for d in data["dns_changes"]]
    if data["dry_run"]:
        lines += ["", "## What a real run would change", ""] + [
            f"- {w['task']}: {w['action']} {w['target']} (before {w['before']}, after {w['after']})"
            for w in data["would_change"]
        ]
    lines += ["", "## Ledger: the changes of this run, in order", ""] + [
        f"- {e['at']} {e['task']}: {e['action']} {e['target']}" for e in data["ledger"]
    ]
    return "\n".join(lines) + "\n"


def draw_timeline(rows: list[dict[str, Any]], freeze: tuple[str | None, str | None], title: str) -> bytes:
    """A Gantt chart of ``rows`` (from :func:`timeline`) with the write freeze shaded, as PNG bytes."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    row_h, left, right, top = 18, 260, 40, 48
    width = 1100
    height = top + row_h * max(len(rows), 1) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black", font=ImageFont.load_default(size=15))
    if not rows:
        draw.text((10, top), "no task timings", fill="black", font=font)
    else:
        t0 = min(datetime.fromisoformat(r["start"]) for r in rows)
        t1 = max(datetime.fromisoformat(r["end"]) for r in rows)
        span = max((t1 - t0).total_seconds(), 0.001)
        scale = (width - left - right) / span

        def x(at: str) -> float:
            return left + (datetime.fromisoformat(at) - t0).total_seconds() * scale

        bottom = top + row_h * len(rows)
        if freeze[0] and freeze[1]:
            draw.rectangle((x(freeze[0]), top - 4, max(x(freeze[1]), x(freeze[0]) + 1), bottom), fill="#fde2e2")
            draw.text((x(freeze[0]) + 2, top - 18), "write freeze", fill="#b00020", font=font)
        step = next(s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if span / s <= 12)
        tick = 0.0
        while tick <= span:
            px = left + tick * scale
            draw.line((px, top - 4, px, bottom), fill="#dddddd")
            draw.text((px - 8, bottom + 6), f"{tick:g}s", fill="#555555", font=font)
            tick += step
        for i, r in enumerate(rows):
            y = top + i * row_h
            draw.text((10, y + 2), r["task"][:38], fill="black", font=font)
            x0 = x(r["start"])
            colour = "#c62828" if r["task"].startswith(FREEZE_START) else "#1565c0"
            if r["task"].startswith("gate_"):
                colour = "#f9a825"
            draw.rectangle((x0, y + 3, max(x(r["end"]), x0 + 2), y + row_h - 3), fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def render_preflight(plan_name: str, results: list[Any], run_id: str, written_at: str) -> tuple[bool, str]:
    """The pre-flight's go/no-go verdict and its Markdown, from check results (``check``, ``status``,
    ``summary``, ``findings``, ``remedy``)."""
    icon = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
    go = not any(r.status == "fail" for r in results)
    lines = [
        f"# Ferry pre-flight: {'GO' if go else 'NO-GO'}",
        "",
        f"- plan: `{plan_name}`",
        f"- run: `{run_id}`",
        f"- written: {written_at}",
        f"- checks: {len(results)}; failed: {sum(r.status == 'fail' for r in results)}; "
        f"warnings: {sum(r.status == 'warn' for r in results)}",
        "",
        "| check | status | summary |",
        "|---|---|---|",
    ]
    lines += [f"| {r.check} | {icon[r.status]} | {r.summary.replace('|', '/')} |" for r in results]
    for r in results:
        if not (r.findings or r.remedy):
            continue
        lines += ["", f"## {r.check}: {icon[r.status]}", ""]
        lines += [f"- {f}" for f in r.findings]
        if r.remedy and r.status in ("fail", "warn"):
            lines += ["", f"**What to do:** {r.remedy}"]
    return go, "\n".join(lines) + "\n"


def verification(results: list[dict[str, Any]], live: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """What was verified when, per table: the live comparison (rows and ranges, while the application
    wrote) and the freeze's (the captured keys and carried ranges, or the whole table, and why)."""
    lives = {r["table"]: r for r in live or []}
    rows = []
    for r in sorted(results, key=lambda r: r["table"]):
        before = lives.get(r["table"])
        rows.append(
            {
                "table": r["table"],
                "equal": r["equal"],
                "rows_source": before["rows_source"] if r.get("phase") == "tail" and before else r["rows_source"],
                "rows_target": before["rows_target"] if r.get("phase") == "tail" and before else r["rows_target"],
                "live_at": before["started_at"] if before else None,
                "live_s": before["seconds"] if before else None,
                "live_ranges": before["ranges_compared"] if before else None,
                "carried": len(before["carried"]) + len(before.get("carried_hashes") or []) if before else 0,
                "freeze": r.get("phase", "full"),
                "freeze_at": r.get("started_at"),
                "freeze_s": r["seconds"],
                "freeze_keys": r.get("keys_verified", 0) + r.get("rows_verified", 0),
                "freeze_ranges": r.get("ranges_compared", r.get("chunks", 0)),
                "whole_because": r.get("carried_whole", ""),
                "seconds": r["seconds"],
            }
        )
    return rows


def render_comparison(
    results: list[dict[str, Any]],
    unreported: list[str],
    live: list[dict[str, Any]] | None = None,
    unverified: list[str] | None = None,
) -> str:
    """The data comparison as Markdown: what a narrowed comparison did not verify (first, in bold), a row per
    table saying what was verified when (live, while the application wrote; in the freeze, by key or whole), then
    every difference named, then the tables whose comparison ended without a result."""
    lines = ["# Ferry data comparison", ""]
    if unverified:
        lines += ["**Not everything was verified:**", ""] + [f"- {line}" for line in unverified] + [""]
    lines += [
        "Live: compared while the application wrote, before the fence. Freeze: `tail` verified only the rows "
        "changed since (change capture) and the ranges still differing then; `full` compared the whole table.",
        "",
        "| table | result | rows source | rows target | live at | live s | live ranges | carried | freeze "
        "| freeze at | freeze s | keys verified in freeze | ranges in freeze |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verification(results, live):
        lines.append(
            f"| {v['table']} | {'EQUAL' if v['equal'] else 'DIFFERENT'} | {v['rows_source']} | {v['rows_target']} "
            f"| {v['live_at'] or '-'} | {v['live_s'] if v['live_s'] is not None else '-'} "
            f"| {v['live_ranges'] if v['live_ranges'] is not None else '-'} | {v['carried']} | {v['freeze']} "
            f"| {v['freeze_at'] or '-'} | {v['freeze_s']} | {v['freeze_keys']} | {v['freeze_ranges']} |"
        )
    whole = [v for v in verification(results, live) if v["whole_because"]]
    if whole:
        lines += ["", "Compared whole in the freeze:"] + [f"- {v['table']}: {v['whole_because']}" for v in whole]
    for r in results:
        if not r["equal"]:
            lines += ["", f"## {r['table']}: DIFFERENT", ""]
            lines += [f"- missing on the target: {k}" for k in r["missing_on_target"]]
            lines += [f"- only on the target: {k}" for k in r["extra_on_target"]]
            lines += [f"- changed: {k}" for k in r["changed"]]
            lines += [
                f"- row hash {d['row_hash']}: {d['source']} on the source, {d['target']} on the target"
                for d in r["differing_rows"]
            ]
    if unreported:
        lines += ["", f"Not compared (their task failed before a result): {', '.join(unreported)}"]
    return "\n".join(lines) + "\n"


def render_aws_review(facts: list[str], blocking: list[str], warnings: list[str]) -> str:
    """The review of the AWS side as Markdown: READY or BLOCKED, what was found, what blocks, what to watch."""
    lines = [f"# Ferry AWS review: {'BLOCKED' if blocking else 'READY'}", ""]
    lines += [f"- {f}" for f in facts]
    if blocking:
        lines += ["", "## Blocking", ""] + [f"- {b}" for b in blocking]
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


def render_storage(reports: list[dict[str, Any]]) -> str:
    """The bucket copy as Markdown: a row per bucket pair, then every object that failed or does not verify."""
    lines = [
        "# Ferry storage sync",
        "",
        "| source | target | objects | copied | skipped | failed | verified | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['source']} | {r['target']} | {r['objects']} | {r['copied']} | {r['skipped']} | {len(r['failed'])} "
        f"| {r['verified']} | {r['seconds']} |"
        for r in reports
    ]
    for r in reports:
        lines += [f"- failed {f['key']}: {f['error']}" for f in r["failed"]]
        lines += [f"- does not verify: {k}" for k in r["mismatched"]]
    return "\n".join(lines) + "\n"
