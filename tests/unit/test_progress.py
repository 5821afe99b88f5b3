"""Progress lines of a long copy: rows, bytes, rate and ETA, at most one per table every 30 s, then how long."""

from __future__ import annotations

from ferry.progress import Progress, human_bytes, human_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_line_every_30_s_per_table_with_rate_and_eta_then_how_long_it_took():
    clock = Clock()
    progress = Progress(every_s=30, clock=clock)
    first = progress.line("public.events", 0, 1_000_000, 0, 2 * 1024**3)
    assert first == "public.events: 0 of ~1,000,000 rows (0%), 0 B of ~2.0 GB; 0 rows/s; ETA unknown (no rate yet)"
    clock.now += 10
    assert progress.line("public.events", 100_000, 1_000_000, 200 * 1024**2, 2 * 1024**3) is None  # < 30 s
    assert progress.line("public.invoices", 10, 100, 1, 2) is not None  # another table has its own clock
    clock.now += 20
    line = progress.line("public.events", 300_000, 1_000_000, 600 * 1024**2, 2 * 1024**3)
    assert line == (
        "public.events: 300,000 of ~1,000,000 rows (30%), 600.0 MB of ~2.0 GB; 10,000 rows/s; ETA 1 min 10 s"
    )
    clock.now += 75
    assert progress.done("public.events") == "public.events: copied in 1 min 45 s"
    assert progress.done("public.events") is None  # said once
    assert progress.done("public.never_seen") is None


def test_human_units():
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 kB" and human_bytes(3 * 1024**4) == "3.0 TB"
    assert human_seconds(59.6) == "1 min 00 s" and human_seconds(7260) == "2 h 01 min"
