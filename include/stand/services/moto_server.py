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
import logging
import sys

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


if __name__ == "__main__":
    # A line per request in the stand's moto log (werkzeug's access log) cost a tenth of a put's CPU; errors
    # are still logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server.DomainDispatcherApplication = PreloadedDispatcher
    sys.exit(server.main())
