"""Progress of a long wait, with its rate and an ETA, at most one line per item every ``every_s`` seconds: what a
task log says while the initial copy runs for hours."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
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


@dataclass
class Progress:
    """Per item (a table): when it was first seen, and the last sample logged. ``clock`` is injectable (tests)."""

    every_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    started: dict[str, float] = field(default_factory=dict)
    logged: dict[str, tuple[float, float]] = field(default_factory=dict)  # item -> (time, rows) of the last line
    finished: set[str] = field(default_factory=set)

    def line(self, item: str, rows: float, total_rows: float, bytes_done: float, total_bytes: float) -> str | None:
        """A line for ``item`` at ``rows`` of ``total_rows`` done (and bytes), or None when one was logged less than
        ``every_s`` ago. The rate is since the last line (since the first sight for the first)."""
        now = self.clock()
        first = self.started.setdefault(item, now)
        last = self.logged.get(item)
        if last is not None and now - last[0] < self.every_s:
            return None
        since_t, since_rows = last if last is not None else (first, 0.0)
        rate = (rows - since_rows) / (now - since_t) if now > since_t else 0.0
        self.logged[item] = (now, rows)
        share = f" ({100 * rows / total_rows:.0f}%)" if total_rows else ""
        left = max(total_rows - rows, 0)
        eta = f"ETA {human_seconds(left / rate)}" if rate > 0 and total_rows else "ETA unknown (no rate yet)"
        return (
            f"{item}: {rows:,.0f} of ~{total_rows:,.0f} rows{share}, {human_bytes(bytes_done)} of "
            f"~{human_bytes(total_bytes)}; {rate:,.0f} rows/s; {eta}"
        )

    def done(self, item: str) -> str | None:
        """The last line of ``item``, once: how long it took (from the first sight)."""
        if item in self.finished or item not in self.started:
            return None
        self.finished.add(item)
        return f"{item}: copied in {human_seconds(self.clock() - self.started[item])}"
