"""Benchmark the webhook recorder under sustained concurrent load, with a crash, then replay.

Starts its own moto server, recorder and new app on loopback. N clients (billing providers) send
events as fast as they are accepted; each retries an event until it gets a 2xx, as providers
do. Partway through, the recorder is killed (SIGKILL) and started again. Then every recorded
event is replayed to the new app. Prints events per second accepted, p50 and p99 latency of the
accepted requests, stored, delivered and lost (acknowledged but never delivered), and checks that
each recorded event was delivered exactly once. Its last line is a key=value summary.
Run: ``make bench-webhooks``.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

import httpx  # noqa: E402

from ferry.hooks.webhooks import replay  # noqa: E402
from stand.core import Stand  # noqa: E402
from stand.services.moto import AwsMoto, seed_aws  # noqa: E402
from stand.services.web import UvicornApp, app_env, recorder_env  # noqa: E402

BUCKET = "ferry-stand-webhooks"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--kill-at", type=float, default=0.4, help="share of the events after which the recorder is killed"
    )
    args = parser.parse_args()
    stand = Stand(dir=Path("/tmp/ferry-bench-webhooks"), port_base=28320)
    aws = AwsMoto("moto", 5, seed_aws, "aws_default")
    recorder = UvicornApp(
        "recorder", "webhook_recorder.app:app", 7, "webhook_recorder", recorder_env(aws.endpoint, BUCKET)
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
        failures = {"transport": 0, "5xx": 0}
        lock, sent = threading.Lock(), [0]
        per_client = args.events // args.clients

        def provider(n: int) -> None:
            with httpx.Client(base_url=recorder.url(stand), timeout=10) as client:
                for i in range(per_client):
                    event_id = f"c{n}-{i}"
                    while True:
                        t = time.perf_counter()
                        try:
                            response = client.post(
                                "/webhooks/stripe",
                                json={"id": event_id, "type": "invoice.paid"},
                                headers={"Stripe-Signature": f"t={i},v1=bench"},
                            )
                        except httpx.TransportError:
                            with lock:
                                failures["transport"] += 1
                            time.sleep(0.05)
                            continue
                        if response.status_code == 202:
                            with lock:
                                latencies.append(time.perf_counter() - t)
                                acked.append(event_id)
                                sent[0] += 1
                            break
                        with lock:
                            failures["5xx"] += 1
                        time.sleep(0.05)

        threads = [threading.Thread(target=provider, args=(n,)) for n in range(args.clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        while sent[0] < args.events * args.kill_at:
            time.sleep(0.01)
        stand.stop_process("recorder", timeout=0)
        killed_at = sent[0]
        time.sleep(0.5)
        recorder.up(stand)
        print(f"recorder killed after {killed_at} acknowledged events and started again", flush=True)
        for t in threads:
            t.join()
        load_s = time.perf_counter() - started
        with httpx.Client(timeout=10) as client:
            report = replay(
                aws.client(stand, "s3"),
                BUCKET,
                "events/",
                new_app.url(stand),
                "new",
                client=client,
                progress=lambda m: None,
            )
        got = [json.loads(line) for line in (stand.dir / "apps" / "new_app.jsonl").read_text().splitlines()]
        delivered_ids = {json.loads(base64.b64decode(e["body_b64"]))["id"] for e in got}
        delivered_seqs = [e["replay"] for e in got]
        lost = len(set(acked) - delivered_ids)
        exactly_once = len(delivered_seqs) == len(set(delivered_seqs)) == report.recorded
        lat = sorted(latencies)
        p50, p99 = statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000
        print(
            f"{args.clients} clients, {len(acked)} events acknowledged in {load_s:.1f} s "
            f"({len(acked) / load_s:.0f}/s) across a recorder crash; retries: {failures['transport']} cut connections, "
            f"{failures['5xx']} 5xx"
        )
        print(f"latency of accepted requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(
            f"stored {report.recorded} (a provider resending after a cut connection is stored again), "
            f"replayed {report.delivered_now} in {report.seconds:.1f} s ({report.delivered_now / report.seconds:.0f}/s), "
            f"each exactly once: {exactly_once}"
        )
        print(
            f"events_per_s={len(acked) / load_s:.0f} p50_ms={p50:.1f} p99_ms={p99:.1f} acknowledged={len(acked)} "
            f"stored={report.recorded} delivered={len(got)} lost={lost} exactly_once={'yes' if exactly_once else 'NO'} "
            f"replay_per_s={report.delivered_now / report.seconds:.0f}"
        )
        return 0 if lost == 0 and exactly_once and report.reconciled else 1
    finally:
        for service in reversed(services):
            service.down(stand)
        stand.remove()


if __name__ == "__main__":
    sys.exit(main())
