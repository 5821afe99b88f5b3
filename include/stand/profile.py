"""How long the stand's stand-ins take for what is slow on AWS: the stand's latency profile.

``FERRY_STAND_PROFILE`` when the stand comes up: ``instant`` (the default: the tests, the rehearsal) or ``aws``
(``make bench-downtime``), at least these values, each from its source (the README's "Latency profile"):

- ``rds_replica_s``: an RDS read replica is ``creating`` (then ``available``) this long after it was asked for.
  RDS snapshots the primary first; AWS documents minutes, 5 to 15 for a small instance.
- ``route53_insync_s``: a Route53 change is ``PENDING`` (then ``INSYNC``) this long: "changes generally propagate to
  all Route 53 name servers within 60 seconds" (Route53 API reference, GetChange).
- ``kube_ready_s``: a deployment's new replicas are ready this long after its spec changed (a scale, a rollout
  restart): image pull, start and the readiness probe's first successes (default periodSeconds 10).
- ``dns_ttl_s``: the TTL the plan lowers the records to (``dns.records[].low_ttl``), for the users who cached an
  answer: the bench's fallback adds it to the downtime.

moto and the Kubernetes stand-in answer at once otherwise; the profile makes them as slow as the world.
"""

from __future__ import annotations

import json
import os

PROFILES: dict[str, dict[str, float]] = {
    "instant": {"rds_replica_s": 0, "route53_insync_s": 0, "kube_ready_s": 1.0, "dns_ttl_s": 60},
    "aws": {"rds_replica_s": 120, "route53_insync_s": 30, "kube_ready_s": 15.0, "dns_ttl_s": 60},
}
ENV = "FERRY_STAND_PROFILE"


def current() -> tuple[str, dict[str, float]]:
    name = os.environ.get(ENV, "instant")
    if name not in PROFILES:
        raise ValueError(f"{ENV}={name!r}: use one of {', '.join(PROFILES)}")
    return name, PROFILES[name]


def moto_env() -> dict[str, str]:
    """What the AWS moto server reads (stand.services.moto_server)."""
    _, values = current()
    return {"FERRY_STAND_LATENCY": json.dumps({k: values[k] for k in ("rds_replica_s", "route53_insync_s")})}
