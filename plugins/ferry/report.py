"""The D-day report: its data from the ledger and the tasks' timings, as Markdown and as a timeline chart (PNG)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

FREEZE_START, FREEZE_END = "fence_source", ("drop_subscription", "set_sequence")


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
    writable = max((r.at for r in records if r.action in FREEZE_END), default=None)
    if fence is None or writable is None:
        return None, fence.at if fence else None, writable
    seconds = (datetime.fromisoformat(writable) - datetime.fromisoformat(fence.at)).total_seconds()
    return round(seconds, 3), fence.at, writable


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown."""
    lag = data["replication_lag_at_fence"]
    lines = [
        f"# Ferry D-day report: {data['plan']}" + (" (DRY RUN: nothing was changed)" if data["dry_run"] else ""),
        "",
        f"- run: `{data['run_id']}`",
        f"- D-day so far: {data['dday_s']} s (first task start to this report)",
        f"- write freeze (fence to target writable): {data['freeze_window_s']} s "
        f"({data['freeze_start']} to {data['freeze_end']})",
        f"- fence LSN: {data['fence_lsn']}; replication lag at the fence: {lag['bytes']} bytes, "
        + (
            f"caught up after {lag['caught_up_after_s']} s"
            if lag["caught_up_after_s"] is not None
            else "caught up before this try of the wait (a re-run; see the first try's report)"
        ),
        f"- sequences set: {data['sequences_set']}",
        f"- read replicas created: {', '.join(data['read_replicas']) or 'none new'}",
        f"- webhooks: {data['webhooks']}",
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
        "## Comparison",
        "",
        "| table | equal | rows source | rows target | seconds |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['table']} | {c['equal']} | {c['rows_source']} | {c['rows_target']} | {c['seconds']} |"
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
