"""Progress of a long copy, with its rate and an ETA: what a task log says while the initial copy runs for hours.

Stateless, so a sensor in reschedule mode (a new process each poke) says the same: the rate is the copy's rows over
how long it has run, and a line is due at the first sight and then each time the copy's run crosses another
``every_s`` (at most one line per table every 30 s, whatever the poke interval).
"""

from __future__ import annotations


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def due(elapsed_s: float, poke_interval_s: float, every_s: float = 30.0) -> bool:
    """Whether a copy that has run ``elapsed_s`` gets a line at this poke (the previous one ``poke_interval_s`` ago):
    at its first sight, and when it has crossed another ``every_s`` since the previous poke."""
    before = elapsed_s - poke_interval_s
    return before < 0 or int(elapsed_s // every_s) != int(before // every_s)


def _rows_pace(rows: float, total_rows: float, elapsed_s: float) -> tuple[str, float, str]:
    """Of rows done against an estimate: the share (" (47%)"), the rate in rows/s, and the ETA at that rate."""
    rate = rows / elapsed_s if elapsed_s > 0 else 0.0
    share = f" ({100 * min(rows / total_rows, 1):.0f}%)" if total_rows else ""
    left = max(total_rows - rows, 0)
    eta = f"ETA {human_seconds(left / rate)}" if rate > 0 and total_rows else "ETA unknown (no rate yet)"
    return share, rate, eta


def copy_line(
    item: str, rows: float, total_rows: float, bytes_done: float, total_bytes: float, elapsed_s: float
) -> str:
    """``item``: rows and bytes so far of the estimates, the rate since the copy began, and an ETA."""
    share, rate, eta = _rows_pace(rows, total_rows, elapsed_s)
    return (
        f"{item}: {rows:,.0f} of ~{total_rows:,.0f} rows{share}, {human_bytes(bytes_done)} of ~{human_bytes(total_bytes)} "
        f"in {human_seconds(elapsed_s)}; {rate:,.0f} rows/s; {eta}"
    )


def catch_up_line(behind_bytes: float, first_behind_bytes: float, elapsed_s: float) -> str:
    """A catch-up wait: how far behind the fence the subscriber is, how fast that shrinks since the wait began, an
    ETA at that pace."""
    shrunk = first_behind_bytes - behind_bytes
    rate = shrunk / elapsed_s if elapsed_s > 0 else 0.0
    if rate > 0:
        pace = f"shrinking {human_bytes(rate)}/s; ETA {human_seconds(behind_bytes / rate)}"
    else:
        pace = "not shrinking yet (the apply worker may be on a long transaction); ETA unknown"
    return (
        f"{human_bytes(behind_bytes)} behind the fence (it was {human_bytes(first_behind_bytes)}) after "
        f"{human_seconds(elapsed_s)}; {pace}"
    )


def compare_line(table: str, rows: float, total_rows: float, elapsed_s: float) -> str:
    """A live comparison under way: rows compared of the table's estimate, the rate, an ETA."""
    share, rate, eta = _rows_pace(rows, total_rows, elapsed_s)
    return (
        f"{table}: {rows:,.0f} of ~{total_rows:,.0f} rows compared{share} in {human_seconds(elapsed_s)}; "
        f"{rate:,.0f} rows/s; {eta}"
    )
