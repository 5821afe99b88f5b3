"""The D-day report's pieces: the timeline, the freeze window, the Markdown and the chart."""

from __future__ import annotations

import io

from PIL import Image

from ferry.ledger import LedgerRecord
from ferry.report import draw_timeline, freeze_window, render_d_day, timeline

TIMINGS = [
    {"task": "fence_source", "map_index": -1, "start": "2026-11-27T10:00:05+00:00", "end": "2026-11-27T10:00:06+00:00"},
    {
        "task": "gate_go_no_go",
        "map_index": -1,
        "start": "2026-11-27T10:00:00+00:00",
        "end": "2026-11-27T10:00:04+00:00",
    },
    {
        "task": "compare_data",
        "map_index": 1,
        "start": "2026-11-27T10:00:07+00:00",
        "end": "2026-11-27T10:00:09.5+00:00",
    },
]


def record(action: str, at: str) -> LedgerRecord:
    return LedgerRecord(stage="ferry_d_day", task="t", action=action, target="x", at=at)


def test_timeline_orders_by_start_and_names_mapped_tasks():
    rows = timeline(TIMINGS)
    assert [r["task"] for r in rows] == ["gate_go_no_go", "fence_source", "compare_data[1]"]
    assert [r["seconds"] for r in rows] == [4.0, 1.0, 2.5]


def test_the_freeze_runs_from_the_fence_to_the_last_step_that_makes_the_target_writable():
    records = [
        record("stop_unit", "2026-11-27T10:00:01+00:00"),
        record("fence_source", "2026-11-27T10:00:05+00:00"),
        record("drop_subscription", "2026-11-27T10:00:10+00:00"),
        record("set_sequence", "2026-11-27T10:00:11.250000+00:00"),
        record("switch_record", "2026-11-27T10:00:30+00:00"),
    ]
    assert freeze_window(records) == (6.25, "2026-11-27T10:00:05+00:00", "2026-11-27T10:00:11.250000+00:00")
    assert freeze_window(records[:2]) == (None, "2026-11-27T10:00:05+00:00", None)  # never writable: no window


def test_markdown_and_chart_carry_the_timeline_and_the_freeze():
    rows = timeline(TIMINGS)
    data = {
        "plan": "p",
        "run_id": "r",
        "dry_run": True,
        "dday_s": 9.5,
        "freeze_window_s": 6.25,
        "freeze_start": "2026-11-27T10:00:05+00:00",
        "freeze_end": "2026-11-27T10:00:09+00:00",
        "fence_lsn": "0/1",
        "replication_lag_at_fence": {"bytes": 4096, "caught_up_after_s": 0.3},
        "sequences_set": 0,
        "read_replicas": [],
        "webhooks": None,
        "chart": "r.png",
        "timeline": rows,
        "comparison": [{"table": "public.t", "equal": True, "rows_source": 3, "rows_target": 3, "seconds": 0.1}],
        "dns_changes": [],
        "would_change": [{"task": "switch_dns", "action": "switch_record", "target": "dns:a", "before": 1, "after": 2}],
        "ledger": [],
    }
    text = render_d_day(data)
    assert "(DRY RUN: nothing was changed)" in text
    assert "| compare_data[1] | 2026-11-27T10:00:07+00:00 | 2026-11-27T10:00:09.5+00:00 | 2.5 |" in text
    assert "replication lag at the fence: 4096 bytes, caught up after 0.3 s" in text
    assert "- switch_dns: switch_record dns:a (before 1, after 2)" in text
    png = Image.open(io.BytesIO(draw_timeline(rows, (data["freeze_start"], data["freeze_end"]), "title")))
    assert png.format == "PNG" and png.width == 1100 and png.height > 3 * 18
    shaded = png.convert("RGB").getpixel((int(260 + 5 / 9.5 * 800) + 3, 60))  # inside the freeze, above no bar
    assert shaded == (0xFD, 0xE2, 0xE2)
