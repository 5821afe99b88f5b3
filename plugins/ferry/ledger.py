"""The ledger: what Ferry changed, so that re-runs can skip it and rollback can undo it.

Append-only records in S3 (the AWS side survives the shutdown of the old side), one JSON object
per record under ``<plan prefix>/ledger/``, named so that listing them gives the order they were
written in. A record holds no secret value: callers store a version or a hash instead, and every
text is redacted against the plan's secrets as a second guard.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from ferry.plan import Plan
from ferry.redaction import redact


@dataclass
class LedgerRecord:
    """One change: who made it, to what, the value before and after."""

    stage: str
    task: str
    action: str
    target: str
    before: Any = None
    after: Any = None
    try_number: int = 1
    run_id: str = ""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))


class Ledger:
    """The plan's ledger in S3.

    :param plan: the migration plan (its ``ledger`` section and ``aws.conn_id``).
    :param secrets: secret values to redact from every record.
    """

    def __init__(self, plan: Plan, secrets: list[str] | None = None) -> None:
        self.bucket = plan.ledger.bucket
        self.prefix = f"{plan.ledger_prefix}/ledger/"
        self.secrets = secrets or []
        self.hook = S3Hook(aws_conn_id=plan.aws.conn_id)

    def append(self, record: LedgerRecord) -> str:
        """Write ``record`` as a new object; return its key."""
        body = redact(json.dumps(asdict(record), sort_keys=True, default=str), self.secrets)
        # Nanoseconds first so listing order is write order; a random tail keeps parallel tasks apart.
        key = f"{self.prefix}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}-{record.action}.json"
        self.hook.load_string(body, key=key, bucket_name=self.bucket, replace=False)
        return key

    def records(self, *, action: str | None = None, target: str | None = None) -> list[LedgerRecord]:
        """Every record in write order, optionally only those of one action and target."""
        keys = sorted(self.hook.list_keys(bucket_name=self.bucket, prefix=self.prefix) or [])
        found = [LedgerRecord(**json.loads(self.hook.read_key(key, self.bucket))) for key in keys]
        return [r for r in found if (action is None or r.action == action) and (target is None or r.target == target)]

    def last(self, action: str, target: str) -> LedgerRecord | None:
        """The latest record of ``action`` on ``target``, or None."""
        return latest(self.records(action=action, target=target), action, target)


def latest(records: list[LedgerRecord], action: str, target: str) -> LedgerRecord | None:
    """The latest of ``records`` (in write order) of ``action`` on ``target``, or None: for a task that
    reads the ledger once and asks it several questions."""
    return next((r for r in reversed(records) if r.action == action and r.target == target), None)
