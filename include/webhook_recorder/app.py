"""The webhook recorder: during the migration it receives every webhook and keeps it in S3.

It answers 2xx only after the event (method, path, query, headers, body, received-at, a
sequence) is stored in S3, so a provider that got a 2xx has handed the event over for good; on
any storage error it answers 503 and the provider retries. A body over RECORDER_MAX_BYTES gets
413. ``GET /healthz`` says whether the bucket answers.

**Group commit.** Events that arrive while earlier ones are being stored are stored together, as one
S3 object of JSON lines (``<prefix><first sequence>-<instance>.jsonl``), and each is acknowledged once
that object is stored: at most RECORDER_MAX_INFLIGHT puts at a time (default 8), at most
RECORDER_MAX_BATCH events per object (default 500). An event alone is stored at once, alone; under
load the batches grow, so a put's round trip is shared instead of paid per event. A put that fails
fails every event of its batch (503: each provider retries its own).

Settings (environment): RECORDER_BUCKET (required), RECORDER_PREFIX (default ``events/``),
RECORDER_MAX_BYTES (default 1 MiB), RECORDER_MAX_BATCH, RECORDER_MAX_INFLIGHT, and the usual AWS
variables (AWS_ENDPOINT_URL for a stand). Run: ``uvicorn webhook_recorder.app:app``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BUCKET = os.environ.get("RECORDER_BUCKET", "")
PREFIX = os.environ.get("RECORDER_PREFIX", "events/")
MAX_BYTES = int(os.environ.get("RECORDER_MAX_BYTES", str(1024 * 1024)))
MAX_BATCH = int(os.environ.get("RECORDER_MAX_BATCH", "500"))
MAX_INFLIGHT = int(os.environ.get("RECORDER_MAX_INFLIGHT", "8"))
INSTANCE = uuid.uuid4().hex[:8]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}

s3 = boto3.client("s3", config=Config(max_pool_connections=64, retries={"max_attempts": 3, "mode": "standard"}))
_lock = threading.Lock()
_last = [0]


def next_sequence() -> int:
    """Monotonic across requests and restarts: nanoseconds since the epoch, never repeated here."""
    with _lock:
        _last[0] = max(time.time_ns(), _last[0] + 1)
        return _last[0]


class GroupCommit:
    """Store events in batches: what waits when a put slot frees goes in one object (see the module)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[dict, asyncio.Future]] = []
        self.inflight = 0

    async def store(self, event: dict) -> None:
        """Return once ``event`` is stored in S3; raise what the put raised when it is not."""
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((event, done))
        self._start_puts()
        await done

    def _start_puts(self) -> None:
        while self.waiting and self.inflight < MAX_INFLIGHT:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            self.inflight += 1
            asyncio.get_running_loop().create_task(self._put(batch))

    async def _put(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        try:
            body = b"".join(json.dumps(event).encode() + b"\n" for event, _ in batch)
            key = f"{PREFIX}{batch[0][0]['seq']:020d}-{INSTANCE}.jsonl"
            await run_in_threadpool(
                s3.put_object, Bucket=BUCKET, Key=key, Body=body, ContentType="application/x-ndjson"
            )
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


commits = GroupCommit()


async def record(request: Request) -> JSONResponse:
    declared = request.headers.get("content-length")
    if declared and int(declared) > MAX_BYTES:
        return JSONResponse({"error": f"body over {MAX_BYTES} bytes"}, status_code=413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BYTES:
            return JSONResponse({"error": f"body over {MAX_BYTES} bytes"}, status_code=413)
    seq = next_sequence()
    event = {
        "seq": seq,
        "received_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": [[k, v] for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP],
        "body_b64": base64.b64encode(body).decode(),
    }
    try:
        await commits.store(event)
    except Exception as exc:  # noqa: BLE001 - not stored means not acknowledged: the provider retries
        return JSONResponse({"error": f"not stored ({type(exc).__name__}); retry"}, status_code=503)
    return JSONResponse({"recorded": seq}, status_code=202)


async def healthz(request: Request) -> JSONResponse:
    try:
        await run_in_threadpool(s3.head_bucket, Bucket=BUCKET)
    except Exception as exc:  # noqa: BLE001
        return JSONResponse({"status": "unhealthy", "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "bucket": BUCKET})


app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/{path:path}", record, methods=["POST", "PUT", "PATCH", "DELETE"]),
    ]
)
