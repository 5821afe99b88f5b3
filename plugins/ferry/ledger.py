"""The ledger: what Ferry changed, so that re-runs can skip it and rollback can undo it.

Append-only records in S3 (the AWS side survives the shutdown of the old side), one JSON object
per record under ``<plan prefix>/ledger/``, named so that listing them gives the order they were
written in. A record holds no secret value: callers store a version or a hash instead, and every
text is redacted against the plan's secrets as a second guard.

**The rule every operator keeps: record the intent before acting, then the outcome.** A change
is two records sharing a ``change_id``: the intent (``phase="intent"``, written before anything
changes, with the expected ``after``) and the outcome (``phase="done"``, with the actual
``after``). A task that crashes between the two leaves an intent without an outcome: the change
may or may not have happened, and its inverse (which always checks the live state first) undoes
it if it did. :meth:`Ledger.records` gives one :class:`LedgerRecord` per change, its outcome merged
in when there is one.

Every action is an :class:`Action` and every target is built by a :class:`Target` constructor;
nothing else in Ferry spells a ledger string.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from ferry.plan import Plan
from ferry.redaction import redact


class Action(StrEnum):
    """Every kind of change Ferry records."""

    COPY_SCHEMA = "copy_schema"
    CARRY_SCHEMA_CHANGE = "carry_schema_change"
    DROP_COPIED_SCHEMA = "drop_copied_schema"
    CREATE_PUBLICATION = "create_publication"
    DROP_PUBLICATION = "drop_publication"
    CREATE_SUBSCRIPTION = "create_subscription"
    REFRESH_SUBSCRIPTION = "refresh_subscription"
    DROP_SUBSCRIPTION = "drop_subscription"
    ORPHAN_SLOT = "orphan_slot"
    DROP_ORPHAN_SLOT = "drop_orphan_slot"
    CREATE_CAPTURE_SLOT = "create_capture_slot"
    DROP_CAPTURE_SLOT = "drop_capture_slot"
    CREATE_REVERSE_PUBLICATION = "create_reverse_publication"
    CREATE_REVERSE_SLOT = "create_reverse_slot"
    CREATE_REVERSE_SUBSCRIPTION = "create_reverse_subscription"
    DROP_REVERSE_REPLICATION = "drop_reverse_replication"
    FENCE_TARGET = "fence_target"
    UNFENCE_TARGET = "unfence_target"
    RETIRE_SOURCE = "retire_source"
    FENCE_SOURCE = "fence_source"
    UNFENCE_SOURCE = "unfence_source"
    SET_SEQUENCE = "set_sequence"
    COPY_LARGE_OBJECTS = "copy_large_objects"
    REMOVE_LARGE_OBJECTS = "remove_large_objects"
    REFRESH_MATVIEW = "refresh_matview"
    PUT_PARAMETER = "put_parameter"
    RESTORE_PARAMETER = "restore_parameter"
    DELETE_PARAMETER = "delete_parameter"
    CREATE_READ_REPLICA = "create_read_replica"
    DELETE_READ_REPLICA = "delete_read_replica"
    LOWER_TTL = "lower_ttl"
    SWITCH_RECORD = "switch_record"
    WEIGHT_STEP = "weight_step"
    RESTORE_RECORD = "restore_record"
    SCALE_DEPLOYMENT = "scale_deployment"
    RESTORE_REPLICAS = "restore_replicas"
    ROLLOUT_RESTART = "rollout_restart"
    CREATE_RECORDER = "create_recorder"
    UPDATE_RECORDER = "update_recorder"
    REMOVE_RECORDER = "remove_recorder"
    STOP_UNIT = "stop_unit"
    START_UNIT = "start_unit"
    PAUSE_POOLER = "pause_pooler"
    RESUME_POOLER = "resume_pooler"
    REPOINT_POOLER = "repoint_pooler"
    SYNC_BUCKET = "sync_bucket"
    REPLAY_WEBHOOKS = "replay_webhooks"
    STAGE_COMPLETE = "stage_complete"


class Target(str):
    """What a change was made to, as the ledger spells it (``kind:name``). Build one with a constructor."""

    __slots__ = ()

    @classmethod
    def source(cls, name: str) -> Target:
        """An object of the source database (the database itself, a publication, a slot)."""
        return cls(f"source:{name}")

    @classmethod
    def target(cls, name: str) -> Target:
        """An object of the target database (the database itself, a subscription, a sequence)."""
        return cls(f"target:{name}")

    @classmethod
    def dns(cls, name: str, record_type: str) -> Target:
        return cls(f"dns:{name.rstrip('.')}.{record_type}")

    @classmethod
    def ssm(cls, name: str) -> Target:
        return cls(f"ssm:{name}")

    @classmethod
    def rds(cls, instance_id: str) -> Target:
        return cls(f"rds:{instance_id}")

    @classmethod
    def k8s(cls, namespace: str, deployment: str) -> Target:
        return cls(f"k8s:{namespace}/{deployment}")

    @classmethod
    def k8s_object(cls, namespace: str, kind: str, name: str) -> Target:
        return cls(f"k8s:{namespace}/{kind}/{name}")

    @classmethod
    def vm(cls, host: str, unit: str) -> Target:
        return cls(f"vm:{host}:{unit}")

    @classmethod
    def pooler(cls, host: str, database: str) -> Target:
        """A database entry of the old side's connection pooler (PgBouncer) on a VM."""
        return cls(f"pooler:{host}/{database}")

    @classmethod
    def bucket(cls, name: str) -> Target:
        return cls(f"s3:{name}")

    @classmethod
    def webhooks(cls, destination: str) -> Target:
        return cls(f"webhooks:{destination}")

    @classmethod
    def stage(cls, dag_id: str) -> Target:
        return cls(f"stage:{dag_id}")

    @property
    def kind(self) -> str:
        return self.partition(":")[0]

    @property
    def name(self) -> str:
        """Everything after the kind: a parameter's name, an instance id, ``ns/kind/name`` of a k8s object."""
        return self.partition(":")[2]

    @property
    def k8s_kind_and_name(self) -> tuple[str, str]:
        """The kind and name of a :meth:`k8s_object` target."""
        kind, name = self.name.split("/")[-2:]
        return kind, name


@dataclass
class LedgerRecord:
    """One change (or its intent or outcome): who made it, to what, the value before and after."""

    stage: str
    task: str
    action: Action
    target: Target
    before: Any = None
    after: Any = None
    try_number: int = 1
    run_id: str = ""
    at: str = field(default_factory=lambda: _now())
    phase: str = "done"
    """``intent`` (written before acting) or ``done`` (the outcome, or a merged change whose outcome is known)."""
    change_id: str = ""
    done_at: str | None = None
    """On a merged change: when its outcome was recorded."""

    def __post_init__(self) -> None:
        try:
            self.action = Action(self.action)
        except ValueError:
            raise ValueError(
                f"unknown ledger action {self.action!r}; every action is a member of ferry.ledger.Action"
            ) from None
        self.target = Target(self.target)
        if self.phase not in ("intent", "done"):
            raise ValueError(f"ledger phase must be intent or done, not {self.phase!r}")

    @property
    def done(self) -> bool:
        """Whether the change's outcome was recorded (else it may or may not have happened)."""
        return self.phase == "done"

    @property
    def finished_at(self) -> str:
        """When the change was known to be made: its outcome's time, else its intent's."""
        return self.done_at or self.at


_AS_INTENDED: Any = object()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Ledger:
    """The plan's ledger in S3.

    :param plan: the migration plan (its ``ledger`` section and ``aws.conn_id``).
    :param secrets: secret values to redact from every record.
    :param cached: read S3 once and keep what this process appends (a task's own view); otherwise
        every call reads S3 again (for tools and tests that watch other processes write).
    """

    def __init__(self, plan: Plan, secrets: list[str] | None = None, *, cached: bool = False) -> None:
        self.bucket = plan.ledger.bucket
        self.prefix = f"{plan.ledger_prefix}/ledger/"
        self.secrets = secrets or []
        self.hook = S3Hook(aws_conn_id=plan.aws.conn_id)
        self.cached = cached
        self._entries: list[LedgerRecord] | None = None

    def append(self, record: LedgerRecord) -> str:
        """Write ``record`` as a new object; return its key."""
        body = redact(json.dumps(asdict(record), sort_keys=True, default=str), self.secrets)
        # Nanoseconds first so listing order is write order; a random tail keeps parallel tasks apart.
        key = f"{self.prefix}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}-{record.action}.json"
        # One PUT: the key is new by construction (time and a random tail), and a record is a few hundred bytes.
        self.hook.get_conn().put_object(Bucket=self.bucket, Key=key, Body=body.encode(), ContentType="application/json")
        if self._entries is not None:
            self._entries.append(LedgerRecord(**json.loads(body)))
        return key

    def intend(self, record: LedgerRecord) -> LedgerRecord:
        """Write the intent of a change (before acting); return it, to be completed with :meth:`complete`."""
        intent = replace(record, phase="intent", change_id=record.change_id or uuid.uuid4().hex, at=_now())
        self.append(intent)
        return intent

    def complete(self, intent: LedgerRecord, after: Any = _AS_INTENDED) -> LedgerRecord:
        """Write the outcome of the change ``intent`` began (after acting), with its actual ``after``."""
        outcome = replace(intent, phase="done", after=intent.after if after is _AS_INTENDED else after, at=_now())
        self.append(outcome)
        return outcome

    def entries(self) -> list[LedgerRecord]:
        """Every stored record (intents and outcomes apart), in write order."""
        if self._entries is not None:
            return list(self._entries)
        keys = sorted(self.hook.list_keys(bucket_name=self.bucket, prefix=self.prefix) or [])
        client = self.hook.get_conn()  # boto3 clients are thread-safe: one object per request, many at once

        def read(key: str) -> LedgerRecord:
            return LedgerRecord(**json.loads(client.get_object(Bucket=self.bucket, Key=key)["Body"].read()))

        with ThreadPoolExecutor(max_workers=16) as pool:
            found = list(pool.map(read, keys))
        if self.cached:
            self._entries = found
        return list(found)

    def records(self, *, action: Action | None = None, target: str | None = None) -> list[LedgerRecord]:
        """One record per change in the order they began, its outcome merged in; optionally of one action and target."""
        return [
            r
            for r in merge(self.entries())
            if (action is None or r.action == action) and (target is None or r.target == target)
        ]

    def last(self, action: Action, target: str) -> LedgerRecord | None:
        """The latest change of ``action`` on ``target``, or None."""
        return latest(self.records(action=action, target=target), action, target)


def merge(entries: list[LedgerRecord]) -> list[LedgerRecord]:
    """One record per change: an intent with its outcome's ``after`` and time, or alone (``phase="intent"``)."""
    changes: dict[str, LedgerRecord] = {}
    for entry in entries:
        key = entry.change_id or uuid.uuid4().hex  # records from before intents existed stand alone
        begun = changes.get(key)
        if begun is None:
            changes[key] = entry
        elif entry.phase == "done":
            changes[key] = replace(begun, phase="done", after=entry.after, done_at=entry.at)
    return list(changes.values())


def latest(records: list[LedgerRecord], action: Action, target: str) -> LedgerRecord | None:
    """The latest of ``records`` (in write order) of ``action`` on ``target``, or None: for a task that
    reads the ledger once and asks it several questions."""
    return next((r for r in reversed(records) if r.action == action and r.target == target), None)


def switched_to_new_side(plan: Plan, history: list[LedgerRecord], since: str) -> LedgerRecord | None:
    """The first change after ``since`` pointing a DNS record of the plan (other than the webhook
    host, which D-day routes to the recorder) at its new value; None when there is none."""
    new_values = (
        {
            Target.dns(r.name, r.type): r.new_value.rstrip(".")
            for r in plan.dns.records
            if not (plan.webhooks and r.name == plan.webhooks.host)
        }
        if plan.dns
        else {}
    )
    for record in history:
        if record.at <= since or record.action not in (Action.SWITCH_RECORD, Action.WEIGHT_STEP):
            continue
        after = record.after or {}
        values = (
            {v["Value"].rstrip(".") for v in after.get("ResourceRecords", [])} if isinstance(after, dict) else set()
        )
        if record.target in new_values and (new_values[record.target] in values or record.action == Action.WEIGHT_STEP):
            return record
    return None
