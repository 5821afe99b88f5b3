"""The webhook recorder: during the migration it receives every webhook and keeps it in S3.

It answers 2xx only after the event (method, path, query, headers, body, received-at, a
sequence) is stored in S3, so a provider that got a 2xx has handed the event over for good; on
any storage error it answers 503 and the provider retries. A body over RECORDER_MAX_BYTES gets
413. ``GET /healthz`` says whether the bucket answers.

**Group commit.** Events are stored together, as one S3 object of JSON lines
(``<prefix><first sequence>-<instance>.jsonl``), each acknowledged once that object is stored. A put
starts at most once every RECORDER_COMMIT_INTERVAL_MS (default 10), with every event waiting then (at
most RECORDER_MAX_BATCH, default 500), and at most RECORDER_MAX_INFLIGHT puts are in flight (default
16). An event that finds no put started within the interval is stored at once, alone; under load an
event waits at most the interval for its put, and there are at most 100 puts a second whatever the
rate (at 1,000 webhooks/s, about ten events an object). A put that fails fails every event of its batch
(503: each provider retries its own).

**One event loop, no threads.** Each put is an HTTP PUT to a presigned URL (boto3 signs it: its
endpoint, region and credentials, IRSA's included), sent with aiohttp on the server's own loop. Through
boto3's ``put_object`` in a thread, a put cost about 2 ms of CPU and a thread that held the GIL while the
loop waited to answer the next webhook: at 1,000 webhooks/s that was the latency's tail. A put that
gets a 5xx or a cut connection is tried again (3 attempts), as boto3 did.

**No collector pauses.** What the process loads at start (boto3's models, the libraries) is frozen out
of Python's garbage collector (``gc.freeze``) before it serves: a full collection scanned it all, tens
of milliseconds in which no webhook got its answer.

Settings (environment): RECORDER_BUCKET (required), RECORDER_PREFIX (default ``events/``),
RECORDER_MAX_BYTES (default 1 MiB), RECORDER_COMMIT_INTERVAL_MS, RECORDER_MAX_BATCH,
RECORDER_MAX_INFLIGHT, and the usual AWS
variables (AWS_ENDPOINT_URL for a stand). Run: ``uvicorn webhook_recorder.app:app``.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import json
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import boto3
from botocore.config import Config
from yarl import URL

BUCKET = os.environ.get("RECORDER_BUCKET", "")
PREFIX = os.environ.get("RECORDER_PREFIX", "events/")
MAX_BYTES = int(os.environ.get("RECORDER_MAX_BYTES", str(1024 * 1024)))
MAX_BATCH = int(os.environ.get("RECORDER_MAX_BATCH", "500"))
MAX_INFLIGHT = int(os.environ.get("RECORDER_MAX_INFLIGHT", "16"))
INTERVAL_S = float(os.environ.get("RECORDER_COMMIT_INTERVAL_MS", "10")) / 1000
INSTANCE = uuid.uuid4().hex[:8]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}

PUT_ATTEMPTS = 3
# SigV4 (boto3 presigns S3 URLs with SigV2 unless told: regions opened since 2014 refuse it)
s3 = boto3.client(
    "s3",
    config=Config(signature_version="s3v4", max_pool_connections=8, retries={"max_attempts": 3, "mode": "standard"}),
)
_lock = threading.Lock()
_last = [0]


def next_sequence() -> int:
    """Monotonic across requests and restarts: nanoseconds since the epoch, never repeated here."""
    with _lock:
        _last[0] = max(time.time_ns(), _last[0] + 1)
        return _last[0]


class GroupCommit:
    """Store events in batches: what waits when a put may start goes in one object (see the module)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[dict, asyncio.Future]] = []
        self.inflight = 0
        self.last_start = float("-inf")
        self.timer: asyncio.TimerHandle | None = None
        self.puts: set[asyncio.Task] = set()  # the loop holds its tasks weakly

    async def store(self, event: dict) -> None:
        """Return once ``event`` is stored in S3; raise what the put raised when it is not."""
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((event, done))
        self._start_puts()
        await done

    def _start_puts(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting and self.inflight < MAX_INFLIGHT:
            due = self.last_start + INTERVAL_S - loop.time()
            if due > 0:  # a put started less than the interval ago: what waits goes together, then
                if self.timer is None:
                    self.timer = loop.call_later(due, self._tick)
                return
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            self.inflight += 1
            self.last_start = loop.time()
            put = loop.create_task(self._put(batch))
            self.puts.add(put)
            put.add_done_callback(self.puts.discard)

    def _tick(self) -> None:
        self.timer = None
        self._start_puts()

    async def _put(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        try:
            body = b"".join(json.dumps(event).encode() + b"\n" for event, _ in batch)
            await put_object(f"{PREFIX}{batch[0][0]['seq']:020d}-{INSTANCE}.jsonl", body)
        except Exception as exc:  # noqa: BLE001 - handed to every request of the batch
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


class PutFailed(Exception):
    """S3 did not store an object: its status, or the transport error (no URL: it holds a signature)."""


_session: list[aiohttp.ClientSession] = []


async def put_object(key: str, body: bytes) -> None:
    """Store ``body`` at ``key`` in the bucket: a PUT to a URL boto3 presigned, on this loop (see the module)."""
    if not _session:
        _session.append(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_INFLIGHT + 2), timeout=aiohttp.ClientTimeout(total=30)
            )
        )
    # Content-MD5, signed: S3 refuses a body that arrived other than sent (BadDigest), as boto3's checksum did.
    headers = {
        "Content-Type": "application/x-ndjson",
        "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
    }
    params = {
        "Bucket": BUCKET,
        "Key": key,
        "ContentType": headers["Content-Type"],
        "ContentMD5": headers["Content-MD5"],
    }
    why = ""
    for attempt in range(PUT_ATTEMPTS):
        if attempt:
            await asyncio.sleep(0.05 * 2**attempt)
        url = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
        try:
            async with _session[0].put(URL(url, encoded=True), data=body, headers=headers) as response:
                answer = await response.read()
                if response.status == 200:
                    return
                why = f"HTTP {response.status}"
                if response.status < 500:  # S3's error code only: its message can quote the signature
                    code = re.search(rb"<Code>([A-Za-z]+)</Code>", answer)
                    raise PutFailed(f"{why} {code[1].decode() if code else ''}".strip())
        except (aiohttp.ClientError, TimeoutError) as exc:
            why = type(exc).__name__
    raise PutFailed(f"{why} after {PUT_ATTEMPTS} attempts")


commits = GroupCommit()


Answer = tuple[int, dict]


async def record(scope: dict, receive) -> Answer | None:
    """Store one webhook; its answer (None: the provider went away before it was whole; nothing stored)."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    declared = next((v for k, v in headers if k == "content-length"), None)
    if declared and declared.isdigit() and int(declared) > MAX_BYTES:
        return 413, {"error": f"body over {MAX_BYTES} bytes"}
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_BYTES:
            return 413, {"error": f"body over {MAX_BYTES} bytes"}
        if not message.get("more_body"):
            break
    seq = next_sequence()
    event = {
        "seq": seq,
        "received_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[k, v] for k, v in headers if k not in HOP_BY_HOP],
        "body_b64": base64.b64encode(body).decode(),
    }
    try:
        await commits.store(event)
    except Exception as exc:  # noqa: BLE001 - not stored means not acknowledged: the provider retries
        return 503, {"error": f"not stored ({type(exc).__name__}); retry"}
    return 202, {"recorded": seq}


async def healthz() -> Answer:
    try:
        await asyncio.to_thread(s3.head_bucket, Bucket=BUCKET)
    except Exception as exc:  # noqa: BLE001
        return 503, {"status": "unhealthy", "error": type(exc).__name__}
    return 200, {"status": "ok", "bucket": BUCKET}


async def lifespan(receive, send) -> None:
    """Before serving: load what a put needs and freeze it (see the module). After: close the S3 session."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET or "bucket", "Key": "k"})
            gc.collect()
            gc.freeze()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _session:
                await _session.pop().close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict, receive, send) -> None:
    """The ASGI application: ``GET /healthz``; POST, PUT, PATCH and DELETE on any path record a webhook.

    Plain ASGI, no framework: at 1,000 webhooks/s Starlette's layers were about a sixth of the process's CPU (py-spy)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET" and scope["path"] == "/healthz":
        answer: Answer | None = await healthz()
    elif scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
        answer = await record(scope, receive)
    else:
        answer = 405, {"error": "POST, PUT, PATCH or DELETE a webhook; GET /healthz"}
    if answer is None:
        return
    status, content = answer
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
