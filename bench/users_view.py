"""The users' view across the cutover, drawn from what the write load recorded (``<stats>.requests.csv``: each
write's end, latency and outcome), with the pooler's pause and the write freeze from the D-day report.

Two panels over the same seconds: writes per half second (committed, refused, failed), and each write's latency
(log scale). Used by ``bench/downtime.py``; also runnable on a rehearsal's files::

    python bench/users_view.py <requests.csv> <d_day report .json> <out.png>
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "plugins")]  # ferry.ledger

BUCKET_S = 0.5
COLOURS = {"ok": "#2e7d32", "refused": "#c62828", "error": "#000000"}


def read_requests(path: Path) -> list[tuple[float, float | None, str]]:
    """(end epoch seconds, latency in ms or None, outcome) per write, in the order written."""
    with path.open() as f:
        return [
            (float(r["done"]), float(r["latency_ms"]) if r["latency_ms"] else None, r["outcome"])
            for r in csv.DictReader(f)
        ]


def read_users(path: Path) -> list[tuple[float, str, str, float]]:
    """(end epoch seconds, app, outcome, latency ms) per request of the users following DNS (stand.users)."""
    with path.open() as f:
        return [(float(r["done"]), r["app"], r["outcome"], float(r["latency_ms"])) for r in csv.DictReader(f)]


def epoch(at: str | None) -> float | None:
    return None if not at else datetime.fromisoformat(at).timestamp()


def summary(requests: list[tuple[float, float | None, str]], start: float, end: float) -> dict[str, Any]:
    """What the users saw between ``start`` and ``end`` (epoch seconds)."""
    inside = [r for r in requests if start <= r[0] <= end]
    done = sorted(r[1] for r in inside if r[2] == "ok" and r[1] is not None)
    return {
        "requests": len(inside),
        "failed": sum(1 for r in inside if r[2] != "ok"),
        "slowest_ms": done[-1] if done else None,
        "p99_ms": done[min(len(done) - 1, int(len(done) * 0.99))] if done else None,
    }


def draw(
    requests: list[tuple[float, float | None, str]],
    report: dict[str, Any],
    title: str,
    around_s: float = 20.0,
    users: list[tuple[float, str, str, float]] | None = None,
) -> bytes:
    """The chart as PNG bytes, ``around_s`` seconds either side of the pooler's pause (or of the freeze); with
    ``users`` (the users following DNS), a third panel over their whole D-day: requests per second by app."""

    chart = _draw_writes(requests, report, title, around_s)
    if not users:
        return chart
    return _stack(chart, _draw_users(users, report))


def _stack(*pngs: bytes) -> bytes:
    from PIL import Image

    images = [Image.open(io.BytesIO(p)) for p in pngs]
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for image in images:
        out.paste(image, (0, y))
        y += image.height
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def _draw_users(users: list[tuple[float, str, str, float]], report: dict[str, Any]) -> bytes:
    """Requests per second of the users following DNS, by the app that answered (failures in red), with the
    pooler's pause and the DNS switch marked."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    width, left, right, top, h = 1100, 70, 30, 40, 150
    image = Image.new("RGB", (width, top + h + 60), "white")
    d = ImageDraw.Draw(image)
    t0, t1 = users[0][0] - 1, users[-1][0] + 1
    scale = (width - left - right) / (t1 - t0)

    def x(t: float) -> float:
        return left + (t - t0) * scale

    paused = epoch((report.get("users") or {}).get("paused_at"))
    from ferry.ledger import Action

    switched = min(
        (
            epoch(r["at"])
            for r in report.get("ledger", [])
            if r.get("action") == Action.SWITCH_RECORD and r.get("task") == "switch_dns"  # not the webhooks' route
        ),
        default=None,
    )
    colours = {"old_app": "#1565c0", "new_app": "#6a1b9a"}
    per: dict[int, dict[str, int]] = {}
    for done, app, outcome, _ in users:
        key = app if outcome in ("200", "201") else "failed"
        b = per.setdefault(int(done - t0), {})
        b[key] = b.get(key, 0) + 1
    most = max((sum(b.values()) for b in per.values()), default=1)
    for second, counts in per.items():
        _stack_bar(
            d, counts, most, (x(t0 + second), x(t0 + second + 1) - 1), top + h, h, colours | {"failed": "#c62828"}
        )
    for row, (at, label) in enumerate(((paused, "pooler paused"), (switched, "DNS switched"))):
        if at:  # one label per row: the switch follows the pause by seconds, the labels would overlap
            d.line((x(at), top - 4 - 14 * (1 - row), x(at), top + h), fill="#e65100", width=2)
            d.text((x(at) + 3, top - 30 + 14 * row), label, fill="#e65100", font=font)
    d.line((left, top + h, width - right, top + h), fill="black")
    step = next(s for s in (5, 10, 15, 30, 60, 120, 300, 600) if (t1 - t0) / s <= 14)
    base_t = paused or t0
    tick = math.ceil((t0 - base_t) / step) * step
    while base_t + tick <= t1:
        d.line((x(base_t + tick), top + h, x(base_t + tick), top + h + 4), fill="black")
        d.text((x(base_t + tick) - 10, top + h + 6), f"{tick:+g}", fill="black", font=font)
        tick += step
    failed = sum(1 for u in users if u[2] not in ("200", "201"))
    d.text(
        (left, top + h + 24),
        f"users following DNS (each keeps an answer for its TTL): {len(users)} requests, {failed} failed. Per second, "
        "by the app that answered: blue old, purple new, red failed",
        fill="black",
        font=font,
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _stack_bar(
    d: Any, counts: dict[str, int], most: int, span: tuple[float, float], base: float, h: float, colours: dict
) -> None:
    """One bar of ``counts`` stacked upwards from ``base``, in ``colours``' order, ``most`` filling ``h``."""
    for key, colour in colours.items():
        n = counts.get(key, 0)
        if n:
            y = base - n / most * h
            d.rectangle((span[0], y, span[1], base), fill=colour)
            base = y


def _draw_writes(
    requests: list[tuple[float, float | None, str]], report: dict[str, Any], title: str, around_s: float
) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    users = report.get("users") or {}
    paused, resumed = epoch(users.get("paused_at")), epoch(users.get("resumed_at"))
    frozen, thawed = epoch(report.get("freeze_start")), epoch(report.get("freeze_end"))
    middle = paused or frozen or (requests[len(requests) // 2][0] if requests else 0.0)
    t0, t1 = middle - around_s, (resumed or thawed or middle) + around_s
    shown = [r for r in requests if t0 <= r[0] <= t1]

    font, big = ImageFont.load_default(size=12), ImageFont.load_default(size=15)
    width, left, right = 1100, 70, 30
    top1, h1, gap, h2 = 60, 150, 50, 200
    top2 = top1 + h1 + gap
    height = top2 + h2 + 70
    image = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(image)
    d.text((10, 10), title, fill="black", font=big)
    scale = (width - left - right) / (t1 - t0)

    def x(t: float) -> float:
        return left + (t - t0) * scale

    # The pooler's pause and the freeze, shaded across both panels.
    for a, b, colour, label, row in (
        (paused, resumed, "#fff3c4", "pooler paused (queries wait)", 0),
        (frozen, thawed, "#fde2e2", "write freeze", 1),
    ):
        if a and b:
            d.rectangle((x(a), top1, max(x(b), x(a) + 1), top2 + h2), fill=colour)
            d.text((x(a) + 2, top1 - 30 + 14 * row), f"{label} {b - a:.2f} s", fill="#6d4c00", font=font)

    # Panel 1: writes per half second, stacked by outcome.
    buckets: dict[int, dict[str, int]] = {}
    for done, _, outcome in shown:
        b = buckets.setdefault(int((done - t0) // BUCKET_S), {})
        b[outcome] = b.get(outcome, 0) + 1
    most = max((sum(b.values()) for b in buckets.values()), default=1)
    bar = max(1.0, BUCKET_S * scale - 1)
    for i, counts in buckets.items():
        _stack_bar(d, counts, most, (x(t0 + i * BUCKET_S), x(t0 + i * BUCKET_S) + bar), top1 + h1, h1, COLOURS)
    d.line((left, top1 + h1, width - right, top1 + h1), fill="black")
    d.text(
        (left, top1 + h1 + 4),
        f"writes per {BUCKET_S:g} s (max {most}); green committed, red refused, black failed",
        fill="black",
        font=font,
    )

    # Panel 2: each write's latency, log scale from 1 ms to 10 s.
    lo, hi = 0.0, 4.0  # log10 of ms

    def y(ms: float) -> float:
        v = min(max(math.log10(max(ms, 1.0)), lo), hi)
        return top2 + h2 - (v - lo) / (hi - lo) * h2

    for ms in (1, 10, 100, 1000, 10000):
        d.line((left, y(ms), width - right, y(ms)), fill="#dddddd")
        d.text((8, y(ms) - 7), f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s", fill="black", font=font)
    for done, ms, outcome in shown:
        if ms is None:
            d.line((x(done), top2 + h2 - 6, x(done), top2 + h2), fill=COLOURS[outcome])
        else:
            d.ellipse((x(done) - 1.5, y(ms) - 1.5, x(done) + 1.5, y(ms) + 1.5), fill=COLOURS[outcome])
    d.line((left, top2 + h2, width - right, top2 + h2), fill="black")

    # The time axis, seconds from the pause.
    step = 5 if t1 - t0 > 20 else 1
    tick = math.ceil((t0 - middle) / step) * step
    while middle + tick <= t1:
        d.line((x(middle + tick), top2 + h2, x(middle + tick), top2 + h2 + 4), fill="black")
        d.text((x(middle + tick) - 8, top2 + h2 + 6), f"{tick:+g}", fill="black", font=font)
        tick += step
    seen = summary(requests, t0, t1)
    on = users.get("resumed_on") or "the target"
    d.text(
        (left, top2 + h2 + 26),
        f"seconds from the pause; before it the old app's PgBouncer sends to the source, after it to {on}. "
        f"Shown: {seen['requests']} writes, {seen['failed']} failed, slowest {seen['slowest_ms']} ms",
        fill="black",
        font=font,
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__)
        return 2
    requests, report = read_requests(Path(argv[0])), json.loads(Path(argv[1]).read_text())
    Path(argv[2]).write_bytes(draw(requests, report, f"The users' view: {report.get('run_id', '')}"))
    print(f"written: {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
