"""Benchmark the webhook recorder under sustained concurrent load, with a crash, then replay.

Starts its own moto server, recorder and new app on loopback; the recorder reaches S3 through a
latency injector (``stand.latency``: 30 ms held per request, ``--s3-latency-ms``), as it would reach S3
from a cluster. Two phases of load, then the replay:

1. Capacity: N clients (billing providers, a small asyncio HTTP client on kept-alive connections) send
   events as fast as they are accepted, each its next once the last was answered; each retries an event
   until it gets a 2xx, as providers do. Partway through, the recorder is killed (SIGKILL) and started
   again. Prints the events accepted per second. Its latency is mostly the queue (N always waiting).
2. Latency at a rate: an open loop sends events at ``--rate`` per second (1,000), each when it is due
   whether or not the earlier ones were answered, as providers do (their events come when their customers
   act). Prints p50 and p99, each counted from when the event was due.

Then every recorded event is replayed to the new app (the replay reads S3 directly: without injected
latency), and the bench checks that each acknowledged event was delivered exactly once and each
customer's events in order. Its last line is a key=value summary, ``ok=yes`` when nothing was lost,
every event arrived once and in order, and the figures reach the targets (1,000 accepted/s, p99 50 ms at
1,000/s, 1,000 replayed/s; see ``--help``); the exit status is non-zero otherwise.
Run: ``make bench-webhooks``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]


from ferry.hooks.webhooks import ordering_key, replay  # noqa: E402
from stand.core import Stand  # noqa: E402
from stand.latency import LatencyProxy  # noqa: E402
from stand.services.moto import AwsMoto, seed_aws  # noqa: E402
from stand.services.web import UvicornApp, app_env, recorder_env  # noqa: E402

BUCKET = "ferry-stand-webhooks"
ORDER_KEY = ["data.object.customer", "data.object.id"]  # the plan's default webhooks.order_key


def restart(stand: Stand, recorder: UvicornApp) -> None:
    """A crash: SIGKILL (no time to finish anything), then the recorder started again."""
    stand.stop_process("recorder", timeout=0)
    time.sleep(0.5)
    recorder.up(stand)


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: its status and body."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    return status, await reader.readexactly(length)


async def load(
    url: str,
    clients: int,
    per_client: int,
    kill_after: float,
    acked: list[str],
    latencies: list[float],
    failures: dict[str, int],
    crash,
) -> dict[str, float]:
    """``clients`` providers, each sending its events one after the other on a kept-alive connection (a
    small asyncio HTTP client: the load generator must not be the bottleneck on 2 cores); each event is
    sent again until a 202. After ``kill_after`` acknowledged events, ``crash`` runs (in a thread)."""
    host, port = url.removeprefix("http://").split(":")
    crashed: dict[str, float] = {}

    async def provider(n: int) -> None:
        conn = None
        for i in range(per_client):
            event_id = f"c{n}-{i}"
            customer = f"cus_{(n * 7919 + i) % 1000}"  # what the event is about: its ordering key
            body = json.dumps({"id": event_id, "type": "invoice.paid", "data": {"object": {"customer": customer}}})
            body = body.encode()
            request = (
                f"POST /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Stripe-Signature: t={i},v1=bench\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            while True:
                t = time.perf_counter()
                try:
                    if conn is None:
                        conn = await asyncio.open_connection(host, int(port))
                    status, _ = await post(*conn, request)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    failures["transport"] += 1
                    conn = None
                    await asyncio.sleep(0.05)
                    continue
                if status == 202:
                    latencies.append(time.perf_counter() - t)
                    acked.append(event_id)
                    break
                failures["5xx"] += 1
                await asyncio.sleep(0.05)
        if conn:
            conn[1].close()

    async def crasher() -> None:
        while len(acked) < kill_after:
            if len(acked) >= clients * per_client:
                return  # --kill-at above 1: no crash
            await asyncio.sleep(0.01)
        crashed["acked"] = len(acked)
        await asyncio.get_running_loop().run_in_executor(None, crash)

    started = time.perf_counter()
    await asyncio.gather(crasher(), *(provider(n) for n in range(clients)))
    return crashed | {"load_s": time.perf_counter() - started}


async def paced(url: str, rate: float, events: int, latencies: list[float], failures: dict[str, int]) -> float:
    """An open loop: ``events`` webhooks sent at ``rate`` per second, each at its own time whether or not the
    earlier ones were answered, as providers send (their events come when their customers act, not when the
    recorder answers). Each goes on a kept-alive connection that is free, or a new one. Its latency counts from
    when it was due, so a recorder that falls behind shows it (no coordinated omission). Returns the seconds
    the sending took."""
    host, port = url.removeprefix("http://").split(":")
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def one(i: int, due: float) -> None:
        body = json.dumps(
            {"id": f"paced-{i}", "type": "invoice.paid", "data": {"object": {"customer": f"cus_{i % 1000}"}}}
        )
        request = (
            f"POST /webhooks/stripe HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Stripe-Signature: t={i},v1=bench\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
        while True:
            conn = idle.pop() if idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, int(port))
                status, _ = await post(*conn, request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                if reused:  # a kept-alive connection the server had closed when idle: sent again at once, as
                    failures["stale"] += 1  # HTTP clients do
                    continue
                failures["transport"] += 1
                await asyncio.sleep(0.05)
                continue
            idle.append(conn)
            if status == 202:
                latencies.append(time.perf_counter() - due)
                return
            failures["5xx"] += 1
            await asyncio.sleep(0.05)

    started = time.perf_counter()
    sent = []
    for i in range(events):
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*sent)
    for _, writer in idle:
        writer.close()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64, help="providers sending at once")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--kill-at", type=float, default=0.4, help="share of the events after which the recorder is killed"
    )
    parser.add_argument(
        "--replay-concurrency", type=int, default=32, help="ordering keys replayed at once (the plan's default)"
    )
    parser.add_argument("--marker-puts", type=int, default=1, help="the replay's marker puts in flight at most")
    parser.add_argument("--min-events-per-s", type=float, default=1000, help="accepted, for ok=yes")
    parser.add_argument(
        "--max-p99-ms", type=float, default=50, help="of the requests sent at --rate (open loop), for ok=yes"
    )
    parser.add_argument("--rate", type=float, default=1000, help="webhooks per second of the open-loop phase")
    parser.add_argument("--paced-events", type=int, default=5000, help="webhooks sent in the open-loop phase")
    parser.add_argument("--min-replay-per-s", type=float, default=1000, help="for ok=yes")
    parser.add_argument(
        "--s3-latency-ms", type=float, default=30, help="held per request between the recorder and S3 (0: none)"
    )
    args = parser.parse_args()
    stand = Stand(dir=Path("/tmp/ferry-bench-webhooks"), port_base=28320)
    aws = AwsMoto("moto", 5, seed_aws, "aws_default")
    # The recorder reaches S3 through the latency injector, as it would reach S3 from a cluster.
    proxy = LatencyProxy(stand.port(5), args.s3_latency_ms / 1000).start()
    recorder = UvicornApp(
        "recorder", "webhook_recorder.app:app", 7, "webhook_recorder", recorder_env(lambda _: proxy.url, BUCKET)
    )
    new_app = UvicornApp("new_app", "stand.apps:app", 9, "new_app", app_env("new_app"))
    services = [aws, recorder, new_app]
    for service in reversed(services):
        service.down(stand)
    stand.remove()
    stand.dir.mkdir(parents=True)
    try:
        for service in services:
            service.up(stand)
        acked: list[str] = []
        latencies: list[float] = []
        failures = {"transport": 0, "stale": 0, "5xx": 0}
        per_client = args.events // args.clients
        # What this process loaded (boto3, the stand) is never garbage: frozen out of the collector, so that
        # the load generator's full collections do not count as the recorder's latency.
        gc.collect()
        gc.freeze()
        # On uvloop, as the recorder (uvicorn's default). Under load this process took 8–10% of a core on either
        # loop (medians sampled from /proc): it is not what limits the figures.
        killed_at = uvloop.run(
            load(
                recorder.url(stand),
                args.clients,
                per_client,
                args.events * args.kill_at,
                acked,
                latencies,
                failures,
                lambda: restart(stand, recorder),
            )
        )
        load_s = killed_at.pop("load_s")
        if "acked" in killed_at:
            print(f"recorder killed after {killed_at['acked']} acknowledged events and started again", flush=True)
        capacity = len(acked) / load_s
        paced_latencies: list[float] = []
        paced_s = uvloop.run(paced(recorder.url(stand), args.rate, args.paced_events, paced_latencies, failures))
        acked += [f"paced-{i}" for i in range(args.paced_events)]
        report = replay(
            aws.client(stand, "s3"),
            BUCKET,
            "events/",
            new_app.url(stand),
            "new",
            timeout_s=10,
            progress=lambda m: None,
            order_key=ORDER_KEY,
            concurrency=args.replay_concurrency,
            marker_puts=args.marker_puts,
        )
        got = [json.loads(line) for line in (stand.dir / "apps" / "new_app.jsonl").read_text().splitlines()]
        delivered_ids = {json.loads(base64.b64decode(e["body_b64"]))["id"] for e in got}
        delivered_seqs = [e["replay"] for e in got]
        lost = len(set(acked) - delivered_ids)
        exactly_once = len(delivered_seqs) == len(set(delivered_seqs)) == report.recorded
        by_key: dict[str, list[int]] = {}  # the order each customer's events arrived in
        for e in got:
            by_key.setdefault(ordering_key(e, ORDER_KEY), []).append(int(e["replay"]))
        in_order = all(seqs == sorted(seqs) for seqs in by_key.values())

        def percentile(values: list[float], share: float) -> float:
            ordered = sorted(values)
            return ordered[max(0, int(len(ordered) * share) - 1)] * 1000

        sat_p50, sat_p99 = statistics.median(latencies) * 1000, percentile(latencies, 0.99)
        p50, p99 = statistics.median(paced_latencies) * 1000, percentile(paced_latencies, 0.99)
        paced_rate = args.paced_events / paced_s
        replay_per_s = report.delivered_now / report.seconds
        ok = (
            lost == 0
            and exactly_once
            and in_order
            and report.reconciled
            and capacity >= args.min_events_per_s
            and paced_rate >= 0.95 * args.rate
            and p99 <= args.max_p99_ms
            and replay_per_s >= args.min_replay_per_s
        )
        print(
            f"capacity: {args.clients} clients, each sending its next event once the last was answered: "
            f"{len(acked) - args.paced_events} events acknowledged in {load_s:.1f} s ({capacity:.0f}/s) across a "
            f"recorder crash; latency p50 {sat_p50:.1f} ms, p99 {sat_p99:.1f} ms (with {args.clients} always "
            f"waiting, the latency is the queue: about {args.clients} / throughput)"
        )
        print(
            f"open loop: {args.paced_events} events due at {args.rate:g}/s, sent in {paced_s:.1f} s "
            f"({paced_rate:.0f}/s); latency from when each was due: p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
            f"retries in all: {failures['transport']} cut connections, {failures['5xx']} 5xx, {failures['stale']} "
            f"kept-alive connections closed while idle (sent again at once)"
        )
        print(
            f"stored {report.recorded} (a provider resending after a cut connection is stored again), "
            f"replayed {report.delivered_now} in {report.seconds:.1f} s ({report.delivered_now / report.seconds:.0f}/s), "
            f"each exactly once: {exactly_once}"
        )
        print(
            f"s3_latency_ms={args.s3_latency_ms:g} events_per_s={capacity:.0f} saturated_p99_ms={sat_p99:.1f} "
            f"rate={paced_rate:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f} acknowledged={len(acked)} "
            f"stored={report.recorded} delivered={len(got)} lost={lost} exactly_once={'yes' if exactly_once else 'NO'} "
            f"replay_per_s={report.delivered_now / report.seconds:.0f} replay_read_s={report.read_s:.1f} "
            f"replay_send_per_s={report.delivered_now / max(0.001, report.seconds - report.read_s):.0f} "
            f"replay_keys={report.keys} "
            f"per_key_order={'yes' if in_order else 'NO'} ok={'yes' if ok else 'no'}"
        )
        return 0 if ok else 1
    finally:
        for service in reversed(services):
            service.down(stand)
        proxy.stop()
        stand.remove()


if __name__ == "__main__":
    sys.exit(main())
