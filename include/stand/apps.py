"""The stand's old and new applications: the same small web application on each side.

Its users' requests: ``POST /customers`` signs a customer up and answers its id, ``GET /customers/{id}`` reads it
back, each a
transaction on the app's database through its side's PgBouncer (FERRY_APP_DSN: the old app's in front of the
source, the new app's in front of the target). A write the database refuses (a fenced source) answers 503; a
request waits as long as its query does (a paused pooler). Its webhooks: they accept them and keep them.

Each received webhook is appended to a JSON-lines file (FERRY_APP_FILE) before the 2xx, so a test
can read what the application got. ``POST /_fail`` with ``{"status": 503, "count": 2}`` makes the
next requests fail that way: a failure a test asks for, to exercise retries.
Run: ``uvicorn stand.apps:app`` with FERRY_APP_NAME and FERRY_APP_FILE set.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DSN = os.environ.get("FERRY_APP_DSN")
_idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()

NAME = os.environ.get("FERRY_APP_NAME", "app")
FILE = Path(os.environ.get("FERRY_APP_FILE", f"/tmp/ferry-{NAME}.jsonl"))
_lock = threading.Lock()


async def receive(request: Request) -> JSONResponse:
    failing = _take_failure()
    if failing:
        return JSONResponse({"error": "failing on request"}, status_code=failing)
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


def _failures_file() -> Path:
    return FILE.with_name(FILE.name + ".failing.json")


def _take_failure() -> int:
    """The status to fail this request with (0: none). Kept in a file beside FILE, under a lock, so every replica
    of the app (the new app's pods behind their Service) fails the next requests asked, whichever gets them."""
    with _lock, _failures_file().with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = _failures_file()
        wanted = json.loads(path.read_text()) if path.exists() else {"status": 0, "count": 0}
        if wanted["count"] <= 0:
            return 0
        wanted["count"] -= 1
        path.write_text(json.dumps(wanted))
        return int(wanted["status"])


async def fail(request: Request) -> JSONResponse:
    wanted = await request.json()
    failing = {"status": int(wanted["status"]), "count": int(wanted["count"])}
    with _lock, _failures_file().with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _failures_file().write_text(json.dumps(failing))
    return JSONResponse(failing)


def _query(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """One statement in its own transaction, on a connection of the app's pool (made when none is idle)."""
    if not DSN:
        raise RuntimeError("FERRY_APP_DSN is not set: this app has no database")
    try:
        conn = _idle.get_nowait()
    except queue.Empty:
        # No server-side prepared statements: PgBouncer in transaction mode hands each transaction to any server.
        conn = psycopg.connect(DSN, autocommit=True, prepare_threshold=None, connect_timeout=5)
    try:
        row = conn.execute(sql, params).fetchone()
    except psycopg.OperationalError:
        conn.close()  # a broken connection is not given back
        raise
    _idle.put(conn)
    return row


async def sign_up(request: Request) -> JSONResponse:
    wanted = await request.json()
    try:
        (customer,) = await run_in_threadpool(
            _query,
            "INSERT INTO customers (email, name, country) VALUES (%s, %s, 'NL') RETURNING id",
            (f"signup-{uuid.uuid4().hex}@example.com", str(wanted.get("name", "anonymous"))),
        )
    except psycopg.Error as err:
        return JSONResponse({"error": type(err).__name__, "app": NAME}, status_code=503)
    return JSONResponse({"id": customer, "app": NAME}, status_code=201)


async def read_customer(request: Request) -> JSONResponse:
    try:
        row = await run_in_threadpool(
            _query, "SELECT id, name FROM customers WHERE id = %s", (int(request.path_params["customer"]),)
        )
    except psycopg.Error as err:
        return JSONResponse({"error": type(err).__name__, "app": NAME}, status_code=503)
    if row is None:
        return JSONResponse({"error": "no such customer", "app": NAME}, status_code=404)
    return JSONResponse({"id": row[0], "name": row[1], "app": NAME})


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "app": NAME})


async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: its database answers through its PgBouncer (a Kubernetes readiness probe's path)."""
    if DSN:
        try:
            await run_in_threadpool(_query, "SELECT 1", ())
        except psycopg.Error as err:
            return JSONResponse({"status": "not ready", "error": type(err).__name__, "app": NAME}, status_code=503)
    return JSONResponse({"status": "ready", "app": NAME})


app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/_fail", fail, methods=["POST"]),
        Route("/customers", sign_up, methods=["POST"]),
        Route("/customers/{customer:int}", read_customer, methods=["GET"]),
        Route("/{path:path}", receive, methods=["POST", "PUT", "PATCH", "DELETE"]),
    ]
)
