"""The application's users, as the stand has them: they follow DNS.

Each user resolves the application's hostname through the stand's Route53 (moto), keeps the answer for the record's
TTL as a resolver does, and sends its requests to whichever app that answer points at (the old app on the VM, or
the new app): ``POST /customers`` (a sign-up) then ``GET /customers/{id}`` of what it wrote, at a steady rate. Every request is
recorded (its end, the app, its HTTP status or the transport error, its latency) in a CSV file, and summed up:
requests, failed (a 5xx, a refused or broken connection, a read that does not find what was written), the longest
time a user waited between two answered requests, p99 latency, and which app served when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

#: A resolver answer: (record value, TTL in seconds).
Answer = tuple[str, float]


class DnsUsers(threading.Thread):
    """``users`` users, each its own resolver cache, sharing one thread (the requests are sequential, as one user's
    are). ``resolve`` answers the record's current value and TTL; ``where`` maps a value to the app it names and
    that app's base URL. The requests are written to ``record`` when the thread ends.

    :param rate: requests per second in all (each sign-up and its read are two).
    """

    def __init__(
        self,
        resolve: Callable[[], Answer],
        where: dict[str, tuple[str, str]],
        record: Path,
        users: int = 10,
        rate: float = 20.0,
    ) -> None:
        super().__init__(daemon=True)
        self.resolve_now, self.where, self.record = resolve, where, record
        self.users, self.interval = users, 1.0 / rate
        self.stop = threading.Event()
        self.cache: dict[int, tuple[str, float]] = {}  # user -> (value, expires at, monotonic)
        self.rows: list[tuple[float, str, str, float]] = []  # (end epoch, app, outcome, latency s)

    def answer(self, user: int) -> str:
        """The user's cached answer, resolved again once its TTL expired (kept when DNS does not answer)."""
        value, expires = self.cache.get(user, ("", 0.0))
        if time.monotonic() >= expires:
            try:
                value, ttl = self.resolve_now()
                self.cache[user] = (value, time.monotonic() + ttl)
            except Exception:  # noqa: BLE001 (a resolver keeps the last answer when the server does not answer)
                if not value:
                    raise
        return value

    def request(self, client: httpx.Client, value: str, method: str, path: str, body: Any = None) -> Any:
        """One request to the app DNS named (``value``), recorded."""
        app, url = self.where[value]
        began = time.monotonic()
        try:
            response = client.request(method, url + path, json=body)
            outcome = str(response.status_code)
            data = response.json() if response.status_code < 500 else None
        except httpx.HTTPError as err:
            outcome, data = type(err).__name__, None
        self.rows.append((time.time(), app, outcome, time.monotonic() - began))
        return data

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            user, next_at = 0, time.monotonic()
            while not self.stop.is_set():
                user = (user + 1) % self.users
                # A visit: the sign-up and its read-back on the same app (the browser keeps its connection to the
                # server it resolved), whatever the user's DNS answer becomes in between.
                at = self.answer(user)
                made = self.request(client, at, "POST", "/customers", {"name": f"user {user}"})
                if made and "id" in made:
                    read = self.request(client, at, "GET", f"/customers/{made['id']}")
                    if read is None or read.get("id") != made["id"]:
                        self.rows[-1] = (*self.rows[-1][:2], "not found", self.rows[-1][3])
                next_at += 2 * self.interval
                self.stop.wait(max(0.0, next_at - time.monotonic()))
        with self.record.open("w") as out:
            out.write("done,app,outcome,latency_ms\n")
            out.writelines(f"{d:.3f},{app},{outcome},{s * 1000:.2f}\n" for d, app, outcome, s in self.rows)

    def summary(self) -> dict[str, Any]:
        rows = list(self.rows)
        ok = [r for r in rows if r[2] in ("200", "201")]
        latencies = sorted(r[3] for r in ok)
        gaps = [b[0] - a[0] for a, b in zip(ok, ok[1:], strict=False)]
        served: dict[str, dict[str, float]] = {}
        for done, app, _, _ in ok:
            seen = served.setdefault(app, {"first": done, "last": done, "requests": 0})
            seen["last"], seen["requests"] = done, seen["requests"] + 1
        return {
            "requests": len(rows),
            "failed": len(rows) - len(ok),
            "failures": sorted({r[2] for r in rows if r not in ok}),
            "longest_wait_s": round(max(gaps + [max(latencies, default=0.0)]), 3) if rows else None,
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2)
            if latencies
            else None,
            "served": served,
        }


def route53_resolver(host: str) -> Callable[[], Answer]:
    """Resolve ``host``'s CNAME through Route53 (the plan's AWS connection: the stand's moto), with its TTL; of
    weighted records, the heaviest."""

    found: dict[str, Any] = {}

    def resolve() -> Answer:
        if not found:
            from ferry.hooks.route53 import Route53Hook
            from ferry.plan import load_plan

            plan = load_plan()
            found["hook"] = hook = Route53Hook(aws_conn_id=plan.aws.conn_id)
            found["zone"] = hook.get_zone_id(plan.dns.zone)
        sets = found["hook"].get_record_sets(found["zone"], host, "CNAME")
        best = max(sets, key=lambda r: r.get("Weight", 100))
        return best["ResourceRecords"][0]["Value"], float(best.get("TTL", 60))

    return resolve


def line(summary: dict[str, Any]) -> str:
    """The users' view in one line: what they sent, what failed, the longest wait, and which app served when."""
    served = ", ".join(
        f"{app} {s['requests']} (until {time.strftime('%H:%M:%S', time.gmtime(s['last']))} UTC)"
        if app == "old_app"
        else f"{app} {s['requests']} (from {time.strftime('%H:%M:%S', time.gmtime(s['first']))} UTC)"
        for app, s in summary["served"].items()
    )
    failures = f" ({', '.join(summary['failures'])})" if summary["failures"] else ""
    return (
        f"users following DNS: {summary['requests']} requests, {summary['failed']} failed{failures}, longest wait "
        f"{summary['longest_wait_s']} s, p99 {summary['p99_ms']} ms; served by {served or 'no app'}"
    )
