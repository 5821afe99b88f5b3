"""The stand's moto server: ``moto_server`` itself, with the services the stand uses loaded before it listens,
and everything loaded by then frozen out of the garbage collector (``gc.freeze``).

Why: moto loads a service's models on its first request, some 150,000 objects that live as long as the
process. Each full collection then scanned them all, 100–180 ms in which moto answered nothing: under load
one put in a hundred waited that long (measured with ``gc.callbacks``). S3 has no such pause, so the
benchmarks' tails were moto's. Frozen, they are never scanned again; what requests create (the stored
objects, the garbage cycles each request leaves) is collected as before.

Run: ``python -m stand.services.moto_server -H 127.0.0.1 -p PORT`` (``moto_server``'s own arguments).
"""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import re
import sys
import threading
import time
from urllib.parse import parse_qs

from moto import server
from moto.backends import list_of_moto_modules
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

SERVICES = ("s3", "ssm", "rds", "route53", "eks", "ecr", "kms", "sts", "iam")


class PreloadedDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, with the stand's services' applications made before the first request."""

    def __init__(self, create_app) -> None:
        super().__init__(create_app)
        known = set(list_of_moto_modules())
        for service in SERVICES:
            if service in known:
                self.app_instances[service] = create_app(service)
        self.backend_for_host: dict[str | None, object] = {}
        gc.collect()
        gc.freeze()
        gc.callbacks.append(freeze_survivors)

    def get_backend_for_host(self, host: str | None):
        """moto's answer, remembered per host: moto lists its package's 174 folders (a stat each) and tries
        its URL patterns on every request, a third of the CPU of an S3 put."""
        if host not in self.backend_for_host:
            self.backend_for_host[host] = super().get_backend_for_host(host)
        return self.backend_for_host[host]


def freeze_survivors(phase: str, info: dict) -> None:
    """After a full collection, freeze what survived it: what moto loads later (a service's models on its
    first request) and what the stand stores are scanned once, not by every full collection after."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


class SlowLikeAws:
    """WSGI middleware: what moto does at once takes as long as on AWS (the stand's latency profile,
    ``FERRY_STAND_LATENCY``, see stand.profile). A read replica created by CreateDBInstanceReadReplica reads
    ``creating`` in DescribeDBInstances for ``rds_replica_s``; a Route53 change reads ``PENDING`` for
    ``route53_insync_s`` (moto gives every change the same id: the window runs from the latest change)."""

    def __init__(self, app, rds_replica_s: float = 0, route53_insync_s: float = 0) -> None:
        self.app, self.replica_s, self.insync_s = app, rds_replica_s, route53_insync_s
        self.replicas: dict[str, float] = {}
        self.changed_at = 0.0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        action = None
        if method == "POST" and self.replica_s and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(body), str(len(body))
            form = parse_qs(body.decode(errors="replace"))
            action = (form.get("Action") or [None])[0]
            if action == "CreateDBInstanceReadReplica":
                with self.lock:
                    self.replicas[form["DBInstanceIdentifier"][0]] = time.monotonic()
        route53 = self.insync_s and path.startswith("/2013-04-01/")
        if route53 and method == "POST" and path.rstrip("/").endswith("/rrset"):
            with self.lock:
                self.changed_at = time.monotonic()
        if not (action in ("CreateDBInstanceReadReplica", "DescribeDBInstances") or route53):
            return self.app(environ, start_response)
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        text = body.decode()
        now = time.monotonic()
        if action:
            creating = {ident for ident, since in self.replicas.items() if now - since < self.replica_s}

            def still_creating(found: re.Match) -> str:
                block = found.group(0)
                ident = re.search(r"<DBInstanceIdentifier>([^<]*)</DBInstanceIdentifier>", block)
                if ident and ident.group(1) in creating:
                    block = block.replace("<DBInstanceStatus>available<", "<DBInstanceStatus>creating<")
                return block

            text = re.sub(r"<DBInstance>.*?</DBInstance>", still_creating, text, flags=re.S)
        elif now - self.changed_at < self.insync_s:
            text = text.replace("<Status>INSYNC</Status>", "<Status>PENDING</Status>")
        body = text.encode()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]


def slow_like_aws(dispatcher_class):
    """moto's dispatcher class, wrapped in SlowLikeAws when the stand's profile asks for it."""
    latency = json.loads(os.environ.get("FERRY_STAND_LATENCY") or "{}")
    if not any(latency.values()):
        return dispatcher_class

    def make(*args, **kwargs):
        return SlowLikeAws(dispatcher_class(*args, **kwargs), **latency)

    return make


if __name__ == "__main__":
    # A line per request in the stand's moto log (werkzeug's access log) cost a tenth of a put's CPU; errors
    # are still logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server.DomainDispatcherApplication = slow_like_aws(PreloadedDispatcher)
    sys.exit(server.main())
