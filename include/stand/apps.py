"""The stand's old and new applications, as far as webhooks go: they accept them and keep them.

Each received webhook is appended to a JSON-lines file (FERRY_APP_FILE) before the 2xx, so a test
can read what the application got. ``POST /_fail`` with ``{"status": 503, "count": 2}`` makes the
next requests fail that way: a failure a test asks for, to exercise retries.
Run: ``uvicorn stand.apps:app`` with FERRY_APP_NAME and FERRY_APP_FILE set.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

NAME = os.environ.get("FERRY_APP_NAME", "app")
FILE = Path(os.environ.get("FERRY_APP_FILE", f"/tmp/ferry-{NAME}.jsonl"))
_lock = threading.Lock()
_failures = {"status": 0, "count": 0}


async def receive(request: Request) -> JSONResponse:
    with _lock:
        if _failures["count"] > 0:
            _failures["count"] -= 1
            return JSONResponse({"error": "failing on request"}, status_code=_failures["status"])
    body = await request.body()
    entry = {
        "path": request.url.path,
        "query": request.url.query,
        "replay": request.headers.get("x-ferry-replay"),
        "signature": request.headers.get("stripe-signature"),
        "body_b64": base64.b64encode(body).decode(),
    }
    with _lock, FILE.open("a") as out:
        out.write(json.dumps(entry) + "\n")
    return JSONResponse({"received": True, "app": NAME})


async def fail(request: Request) -> JSONResponse:
    wanted = await request.json()
    with _lock:
        _failures.update(status=int(wanted["status"]), count=int(wanted["count"]))
    return JSONResponse(_failures)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "app": NAME})


app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_fail", fail, methods=["POST"]),
        Route("/{path:path}", receive, methods=["POST", "PUT", "PATCH", "DELETE"]),
    ]
)
