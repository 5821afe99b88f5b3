"""Progress lines of a long copy: rows, bytes, rate and ETA, at most one per table every 30 s, whatever the poke
interval, without state between pokes (a sensor in reschedule mode is a new process each time)."""

from __future__ import annotations

from ferry.progress import copy_line, due, human_bytes, human_seconds


def test_a_line_with_rows_bytes_rate_and_eta():
    line = copy_line("public.events", 300_000, 1_000_000, 600 * 1024**2, 2 * 1024**3, 30)
    assert line == (
        "public.events: 300,000 of ~1,000,000 rows (30%), 600.0 MB of ~2.0 GB in 30 s; 10,000 rows/s; ETA 1 min 10 s"
    )
    assert copy_line("t", 0, 100, 0, 10, 0).endswith("0 rows/s; ETA unknown (no rate yet)")
    assert "(100%)" in copy_line("t", 120, 100, 0, 10, 5)  # an estimate is not an exact count


def test_at_most_one_line_every_30_s_whatever_the_poke_interval():
    for interval in (2, 10, 29):
        polls = [interval * i + 0.5 for i in range(int(600 / interval))]
        lines = [t for t in polls if due(t, interval)]
        assert lines[0] == polls[0]  # the first sight
        assert all(b - a >= 30 - interval for a, b in zip(lines, lines[1:], strict=False))
        assert 19 <= len(lines) <= 21, (interval, len(lines))  # about one per 30 s over 10 minutes
    assert all(due(t, 60) for t in (0.5, 60.5, 120.5))  # a slower poke: a line each time


def test_human_units():
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 kB" and human_bytes(3 * 1024**4) == "3.0 TB"
    assert human_seconds(59.6) == "1 min 00 s" and human_seconds(7260) == "2 h 01 min"


def test_a_catch_up_line_with_how_fast_it_shrinks_and_an_eta():
    from ferry.progress import catch_up_line

    line = catch_up_line(behind_bytes=2 * 1024**2, first_behind_bytes=10 * 1024**2, elapsed_s=4)
    assert line == "2.0 MB behind the fence (it was 10.0 MB) after 4 s; shrinking 2.0 MB/s; ETA 1 s"
    stuck = catch_up_line(behind_bytes=5000, first_behind_bytes=5000, elapsed_s=40)
    assert stuck.endswith("not shrinking yet (the apply worker may be on a long transaction); ETA unknown")


def test_a_live_comparison_line_with_its_share_rate_and_eta():
    from ferry.progress import compare_line

    line = compare_line("public.events", 3_000_000, 10_000_000, 60)
    assert (
        line
        == "public.events: 3,000,000 of ~10,000,000 rows compared (30%) in 1 min 00 s; 50,000 rows/s; ETA 2 min 20 s"
    )
