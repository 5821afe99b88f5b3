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


def test_the_comparison_report_names_every_difference_and_what_was_not_compared():
    from ferry.report import render_comparison

    results = [
        {"table": "public.b", "equal": True, "rows_source": 3, "rows_target": 3, "chunks": 1, "seconds": 0.1},
        {
            "table": "public.a",
            "equal": False,
            "rows_source": 5,
            "rows_target": 4,
            "chunks": 2,
            "seconds": 0.2,
            "missing_on_target": ["17"],
            "extra_on_target": [],
            "changed": ["(2,c0041)"],
            "differing_rows": [{"row_hash": "-42", "source": 2, "target": 1}],
        },
    ]
    text = render_comparison(results, ["public.c"])
    rows = [line for line in text.splitlines() if line.startswith("| public.")]
    assert rows == [
        "| public.a | DIFFERENT | 5 | 4 | - | - | - | 0 | full | - | 0.2 | 0 | 2 |",
        "| public.b | EQUAL | 3 | 3 | - | - | - | 0 | full | - | 0.1 | 0 | 1 |",
    ]
    assert "- missing on the target: 17" in text and "- changed: (2,c0041)" in text
    assert "- row hash -42: 2 on the source, 1 on the target" in text
    assert text.endswith("Not compared (their task failed before a result): public.c\n")


def test_the_comparison_report_says_what_was_verified_live_and_what_in_the_freeze():
    from ferry.report import render_comparison

    live = [
        {
            "table": "public.a",
            "rows_source": 1000,
            "rows_target": 998,
            "ranges_compared": 9,
            "seconds": 1.5,
            "started_at": "2026-11-28T10:00:00+00:00",
            "carried": [[["990"], None]],
            "carried_whole": "",
        },
        {
            "table": "public.b",
            "rows_source": 7,
            "rows_target": 7,
            "ranges_compared": 1,
            "seconds": 0.1,
            "started_at": "2026-11-28T10:00:01+00:00",
            "carried": [],
            "carried_whole": "truncated",
        },
    ]
    results = [
        {
            "table": "public.a",
            "equal": True,
            "phase": "tail",
            "rows_source": 0,
            "rows_target": 0,
            "ranges_compared": 2,
            "keys_verified": 12,
            "rows_verified": 0,
            "seconds": 0.05,
            "started_at": "2026-11-28T10:05:00+00:00",
            "carried_whole": "",
        },
        {
            "table": "public.b",
            "equal": True,
            "phase": "full",
            "rows_source": 7,
            "rows_target": 7,
            "ranges_compared": 1,
            "seconds": 0.02,
            "started_at": "2026-11-28T10:05:00+00:00",
            "carried_whole": "truncated",
        },
    ]
    text = render_comparison(results, [], live)
    rows = [line for line in text.splitlines() if line.startswith("| public.")]
    assert rows == [
        "| public.a | EQUAL | 1000 | 998 | 2026-11-28T10:00:00+00:00 | 1.5 | 9 | 1 | tail "
        "| 2026-11-28T10:05:00+00:00 | 0.05 | 12 | 2 |",
        "| public.b | EQUAL | 7 | 7 | 2026-11-28T10:00:01+00:00 | 0.1 | 1 | 0 | full "
        "| 2026-11-28T10:05:00+00:00 | 0.02 | 0 | 1 |",
    ]
    assert "- public.b: truncated" in text


def test_the_aws_review_says_ready_or_blocked_with_its_reasons():
    from ferry.report import render_aws_review

    ready = render_aws_review(["RDS x: available"], [], ["RDS instance is not Multi-AZ"])
    assert ready.startswith("# Ferry AWS review: READY\n") and "## Blocking" not in ready
    assert "## Warnings\n\n- RDS instance is not Multi-AZ" in ready
    blocked = render_aws_review([], ["parameter group g lacks rds.logical_replication = 1 (set it and reboot)"], [])
    assert blocked.startswith("# Ferry AWS review: BLOCKED\n") and "- parameter group g lacks" in blocked


def test_the_storage_report_lists_each_pair_and_each_object_that_failed():
    from ferry.report import render_storage

    pair = {"source": "s", "target": "t", "objects": 3, "copied": 1, "skipped": 1, "verified": 2, "seconds": 0.5}
    text = render_storage([pair | {"failed": [{"key": "k1", "error": "Timeout"}], "mismatched": ["k2"]}])
    assert "| s | t | 3 | 1 | 1 | 1 | 2 | 0.5 |" in text
    assert "- failed k1: Timeout" in text and "- does not verify: k2" in text
