"""Replay recorded webhooks to an application, in the order they were received, each once.

Every event the recorder stored is sent with its original method, path, query, headers and body,
plus ``X-Ferry-Replay: <sequence>``. The recorder stores events alone (``<seq>-<instance>.json``) or in
batches of JSON lines (``<first seq>-<instance>.jsonl``, its group commit); each event is known by
``<seq>-<instance>.json`` either way, and events are sent in sequence order across objects. A 2xx is
followed by the event's delivery marker (markers of events acknowledged together share one object),
and its key's next event waits for it, so a re-run sends nothing twice. Events keep
their order within an ordering key (the provider and the object the event is about); keys go in
parallel. 5xx answers and timeouts are retried with
exponential backoff; a 4xx, or retries running out, stops the replay there (later events wait,
keeping the order) and is reported. Counts are reconciled: recorded = delivered + failed + pending.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from yarl import URL

REPLAY_HEADER = "X-Ferry-Replay"


@dataclass
class ReplayReport:
    """What one replay to one destination did."""

    destination: str
    recorded: int = 0
    delivered_before: int = 0
    delivered_now: int = 0
    retries: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0
    seconds: float = 0.0
    read_s: float = 0.0
    """Of ``seconds``, reading the recorded events and the delivery markers, before the first send."""
    keys: int = 0
    """Ordering keys among the events sent (each key's events in order; keys in parallel)."""

    @property
    def delivered(self) -> int:
        return self.delivered_before + self.delivered_now

    @property
    def reconciled(self) -> bool:
        return self.recorded == self.delivered + len(self.failed) + self.pending

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"delivered": self.delivered, "reconciled": self.reconciled}


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


@dataclass
class Recorded:
    """One recorded event: its id (its delivery marker's name), the object that holds it, the event."""

    id: str
    key: str
    event: dict[str, Any]


def read_events(s3: Any, bucket: str, key: str) -> list[Recorded]:
    """The events of one recorder object: one (``.json``) or a batch of JSON lines (``.jsonl``)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    name = key.rsplit("/", 1)[-1]
    if not name.endswith(".jsonl"):
        return [Recorded(name, key, json.loads(body))]
    instance = name.removesuffix(".jsonl").split("-", 1)[1]
    events = [json.loads(line) for line in body.splitlines() if line.strip()]
    return [Recorded(f"{e['seq']:020d}-{instance}.json", key, e) for e in events]


def readers(s3: Any) -> int:
    """Threads to read objects with: as many as the client keeps connections (botocore's default is 10; more
    threads open connections it then discards, warning in the task log each time)."""
    return s3.meta.config.max_pool_connections


def recorded_events(s3: Any, bucket: str, prefix: str) -> list[Recorded]:
    """Every event recorded under ``prefix``, in received order (sequence, then recorder instance)."""
    keys = list_keys(s3, bucket, prefix)
    with ThreadPoolExecutor(max_workers=readers(s3)) as pool:
        found = [r for batch in pool.map(lambda k: read_events(s3, bucket, k), keys) for r in batch]
    return sorted(found, key=lambda r: (r.event["seq"], r.id))


def pending_events(
    s3: Any,
    bucket: str,
    prefix: str,
    destination: str,
    events: list[Recorded] | None = None,
    also_done_at: tuple[str, ...] = (),
) -> list[Recorded]:
    """The recorded events not yet delivered to ``destination`` (nor to any of ``also_done_at``), in received
    order."""
    delivered = set().union(*(delivered_ids(s3, bucket, d) for d in (destination, *also_done_at)))
    return [r for r in (recorded_events(s3, bucket, prefix) if events is None else events) if r.id not in delivered]


def delivered_ids(s3: Any, bucket: str, destination: str) -> set[str]:
    """The ids of the events delivered to ``destination``: each marker object names one (``<id>``) or, as
    the replay writes them, several (``batch-*.ids``, one id per line)."""
    marker_prefix = f"delivered/{destination}/"
    names = [k.removeprefix(marker_prefix) for k in list_keys(s3, bucket, marker_prefix)]
    batches = [n for n in names if n.startswith("batch-") and n.endswith(".ids")]
    found = set(names) - set(batches)
    with ThreadPoolExecutor(max_workers=readers(s3)) as pool:
        for body in pool.map(lambda n: s3.get_object(Bucket=bucket, Key=marker_prefix + n)["Body"].read(), batches):
            found.update(body.decode().split())
    return found


class MarkerCommit:
    """Delivery markers stored together: a lane hands the id of an event the application acknowledged and
    waits until it is stored; ids handed while a put is in flight go in the next object (one put for
    many events, as the recorder's group commit). So each lane's next event is sent only once the last
    one is marked, as with one marker per event. At most ``max_inflight`` puts at a time (one: the
    fewest puts, each with every id waiting), each in a thread (boto3 blocks)."""

    def __init__(self, s3: Any, bucket: str, destination: str, max_inflight: int = 1) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, f"delivered/{destination}/"
        self.waiting: list[tuple[str, asyncio.Future]] = []
        self.inflight, self.max_inflight = 0, max_inflight
        self.puts: set[asyncio.Task] = set()  # the loop holds its tasks weakly

    async def mark(self, event_id: str) -> None:
        """Return once ``event_id``'s marker is stored; raise what the put raised if it was not."""
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((event_id, done))
        self._start_puts()
        await done

    def _start_puts(self) -> None:
        while self.waiting and self.inflight < self.max_inflight:
            batch, self.waiting = self.waiting, []
            self.inflight += 1
            put = asyncio.get_running_loop().create_task(self._put(batch))
            self.puts.add(put)
            put.add_done_callback(self.puts.discard)

    async def _put(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        key = f"{self.prefix}batch-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.ids"
        try:
            body = "\n".join(event_id for event_id, _ in batch).encode()
            await asyncio.to_thread(self.s3.put_object, Bucket=self.bucket, Key=key, Body=body)
        except Exception as exc:  # noqa: BLE001 - handed to each lane whose marker this was
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
        finally:
            self.inflight -= 1
            self._start_puts()


def ordering_key(event: dict[str, Any], fields: list[str]) -> str:
    """The key whose events keep their order: the webhook's path (its provider) and the value of the first
    of ``fields`` (dotted, in the JSON body) it has; the path alone when it has none."""
    try:
        body = json.loads(base64.b64decode(event["body_b64"]))
    except ValueError:
        return event["path"]
    for name in fields:
        value: Any = body
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, dict | list):
            return f"{event['path']} {value}"
    return event["path"]


def replay(
    s3: Any,
    bucket: str,
    prefix: str,
    base_url: str,
    destination: str,
    *,
    timeout_s: float = 10.0,
    attempts: int = 6,
    backoff_s: float = 0.5,
    progress: Callable[[str], None] = print,
    progress_every_s: float = 5.0,
    order_key: list[str] | None = None,
    concurrency: int = 1,
    also_done_at: tuple[str, ...] = (),
    marker_puts: int = 1,
    events: list[Recorded] | None = None,
) -> ReplayReport:
    """Send every event under ``prefix`` not yet delivered to ``destination``: in order within each
    ordering key (:func:`ordering_key` over ``order_key``), up to ``concurrency`` keys at once. An event
    that fails stops its key there (its later events wait, keeping the order); other keys go on.
    Events delivered to one of ``also_done_at`` count as delivered (a rollback after the cutover: what the new
    app did with them reached the old database through the reverse replication). ``events``: every recorded
    event, when the caller has just read them (:func:`recorded_events`); else they are read here.

    The sending runs on one event loop (aiohttp, a kept-alive connection per key at once): a thread per key
    and a blocking client cost about twice the CPU per event, and the replay is CPU-bound."""
    started = time.monotonic()
    report = ReplayReport(destination=destination)
    events = recorded_events(s3, bucket, prefix) if events is None else events
    report.recorded = len(events)
    todo = pending_events(s3, bucket, prefix, destination, events, also_done_at)
    report.delivered_before = report.recorded - len(todo)
    lanes: dict[str, list[Recorded]] = {}
    for recorded in todo:
        lanes.setdefault(ordering_key(recorded.event, order_key or []), []).append(recorded)
    report.keys = len(lanes)
    report.read_s = round(time.monotonic() - started, 3)
    progress(
        f"replay to {destination} ({base_url}): {report.recorded} recorded, {report.delivered_before} "
        f"delivered before, {len(todo)} to send, {len(lanes)} ordering key(s), {concurrency} at once "
        f"(read in {report.read_s:.1f} s)"
    )
    if lanes:
        asyncio.run(
            _send_lanes(
                list(lanes.values()),
                base_url,
                MarkerCommit(s3, bucket, destination, marker_puts),
                report,
                timeout_s=timeout_s,
                attempts=attempts,
                backoff_s=backoff_s,
                concurrency=concurrency,
                progress=progress,
                progress_every_s=progress_every_s,
                total=len(todo),
            )
        )
    report.seconds = round(time.monotonic() - started, 3)
    progress(
        f"replay to {destination}: recorded {report.recorded} = delivered {report.delivered} "
        f"(now {report.delivered_now}) + failed {len(report.failed)} + pending {report.pending}; "
        f"{report.retries} retries; {report.seconds:.1f} s"
    )
    return report


async def _send_lanes(
    lanes: list[list[Recorded]],
    base_url: str,
    markers: MarkerCommit,
    report: ReplayReport,
    *,
    timeout_s: float,
    attempts: int,
    backoff_s: float,
    concurrency: int,
    progress: Callable[[str], None],
    progress_every_s: float,
    total: int,
) -> None:
    """Each lane's events one after the other (each marked before the next is sent), ``concurrency`` lanes at
    once."""
    slots = asyncio.Semaphore(max(1, concurrency))
    last = [time.monotonic()]
    connector = aiohttp.TCPConnector(limit=max(1, concurrency))
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), auto_decompress=False
    ) as session:

        async def send_lane(lane: list[Recorded]) -> None:
            async with slots:
                for index, recorded in enumerate(lane):
                    event = recorded.event
                    outcome = await _send(session, base_url, event, attempts, backoff_s, report)
                    if outcome is not None:
                        report.failed.append(
                            {"key": recorded.id, "seq": event["seq"], "path": event["path"], "error": outcome}
                        )
                        report.pending += len(lane) - index - 1
                        progress(
                            f"stopped at event {event['seq']} ({event['path']}): {outcome}; "
                            f"{len(lane) - index - 1} of its ordering key wait behind it"
                        )
                        return
                    await markers.mark(recorded.id)
                    report.delivered_now += 1
                    if time.monotonic() - last[0] >= progress_every_s:
                        last[0] = time.monotonic()
                        progress(f"  {report.delivered_now}/{total} sent")

        await asyncio.gather(*(send_lane(lane) for lane in lanes))


async def _send(
    session: aiohttp.ClientSession,
    base_url: str,
    event: dict[str, Any],
    attempts: int,
    backoff_s: float,
    report: ReplayReport,
) -> str | None:
    """Deliver one event; None when delivered, else why not."""
    headers = [(k, v) for k, v in event["headers"]] + [(REPLAY_HEADER, str(event["seq"]))]
    url = URL(base_url.rstrip("/") + event["path"] + (f"?{event['query']}" if event["query"] else ""), encoded=True)
    body = base64.b64decode(event["body_b64"])
    why = ""
    for attempt in range(attempts):
        if attempt:
            report.retries += 1
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            async with session.request(event["method"], url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            why = f"{type(exc).__name__}"
            continue
        if status < 300:
            return None
        why = f"HTTP {status}"
        if status < 500:
            return f"{why}: the application refused it; fix the cause, then replay again"
    return f"{why} after {attempts} attempts"
