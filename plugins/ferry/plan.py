"""The migration plan: one typed model of everything a Ferry migration touches, and its loader.

A plan names every system by an Airflow connection id and lists what is in scope. It holds
no secret value: secrets live in Airflow connections and variables. A bad plan fails with
one :class:`PlanError` listing every problem by field path, each with how to fix it.
"""

from __future__ import annotations

import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ferry.paths import INCLUDE_DIR

EXAMPLE_PLAN = INCLUDE_DIR / "plan.example.yaml"
PLAN_VARIABLE = "ferry_plan"
PLAN_ENV = "FERRY_PLAN"

_IDENT = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")
_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


def _conn_id(value: str) -> str:
    if not value.strip():
        raise ValueError(
            "connection id is empty; name an Airflow connection (Admin > Connections, "
            "or an AIRFLOW_CONN_<ID> environment variable)"
        )
    if not _CONN_ID.match(value):
        raise ValueError(f"{value!r} is not a valid Airflow connection id; use letters, digits, '_', '.', '-'")
    return value


def _pg_ident(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(
            f"{value!r} is not a plain PostgreSQL identifier; use lower case letters, digits and '_' "
            "(at most 63 characters, not starting with a digit)"
        )
    return value


def _hostname(value: str) -> str:
    name = value.rstrip(".").lower()
    if not name or any(not re.match(r"^(\*|[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)$", p) for p in name.split(".")):
        raise ValueError(f"{value!r} is not a DNS name; write it like app.example.com")
    return name


ConnId = Annotated[str, AfterValidator(_conn_id)]
PgIdent = Annotated[str, AfterValidator(_pg_ident)]
HostName = Annotated[str, AfterValidator(_hostname)]
NonEmpty = Annotated[str, Field(min_length=1)]


def _unique(items: list[Any], key: str, what: str) -> list[Any]:
    seen: set[str] = set()
    dupes = []
    for item in items:
        value = getattr(item, key) if not isinstance(item, str) else item
        if value in seen:
            dupes.append(value)
        seen.add(value)
    if dupes:
        raise ValueError(f"duplicate {what} {', '.join(map(repr, sorted(set(dupes))))}; each must appear once")
    return items


class Strict(BaseModel):
    """Base of every plan section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Preflight(Strict):
    schedule: NonEmpty = "@hourly"
    """Cron expression or preset for the scheduled ``ferry_preflight`` runs."""
    notify_conn_id: ConnId | None = None
    """An HTTP connection (a chat or paging webhook) that a failed ``ferry_preflight`` run is posted to, as
    JSON: the DAG, the run, why it failed and where to look. None: failures show only in Airflow."""
    notify_endpoint: str = "/"
    """The path on ``notify_conn_id`` to post to."""


# The superusers a managed service keeps for itself: RDS (rdsadmin, rdsrepladmin), DigitalOcean (_dodb), Azure
# (azuresu, azure_superuser), Cloud SQL (cloudsqladmin...). No client of the customer's logs in as them.
PROVIDER_SUPERUSERS = ["rdsadmin", "rdsrepladmin", "_dodb", "azuresu", "azure_superuser", "cloudsqladmin"]


class PostgresSide(Strict):
    conn_id: ConnId
    database: NonEmpty
    app_roles: list[PgIdent] = []
    """Roles the application writes through (checked to exist). The fence holds them, and every other
    role that can write a table in scope."""
    provider_superusers: list[PgIdent] = PROVIDER_SUPERUSERS
    """Superusers the managed service keeps for itself (no client of yours logs in as them): the fence cannot hold
    a superuser, so the pre-flight fails on any other; these it names and leaves."""

    @field_validator("app_roles")
    @classmethod
    def _unique_roles(cls, v: list[str]) -> list[str]:
        return _unique(v, "", "role")


class Pooler(Strict):
    """The old side's connection pooler (PgBouncer), through which the old app reaches the source. With one, D-day
    switches there: the pooler pauses (queries wait, none fails), the write freeze runs, then the pooler's database
    entry is pointed at the target and it resumes; the old app keeps serving, now from the new database, and DNS
    moves the users to the new app afterwards. Without one, D-day stops the old app's units for the freeze."""

    admin_conn_id: ConnId
    """PgBouncer's admin console as an Airflow Postgres connection (its host and port; the login is one of
    PgBouncer's ``admin_users``; the database is always ``pgbouncer``)."""
    database: PgIdent
    """The ``[databases]`` entry the application connects through."""
    vm: NonEmpty
    """The VM (``vms[].name``) PgBouncer runs on: Ferry edits its configuration file over that VM's SSH
    connection, then has PgBouncer reload it."""
    config_path: Annotated[str, Field(pattern=r"^[A-Za-z0-9_./${}-]+$")] = "/etc/pgbouncer/pgbouncer.ini"
    """The file holding the ``[databases]`` entry (the SSH login must be able to write it, or set ``sudo``). Read by
    the VM's shell: ``$VARIABLES`` are expanded there."""
    sudo: bool = False
    """Edit the file with ``sudo -n`` (the SSH login may run ``cp``, ``tee`` and ``mv`` on it without a password)."""
    target_host: HostName | None = None
    """The target as PgBouncer reaches it (default: the host of target.conn_id)."""
    target_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """Default: the port of target.conn_id."""
    pause_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    """How long PAUSE may wait for the transactions in flight to end; past it, the pooler resumes on the source
    and D-day stops before the fence (a client holds a transaction open)."""


class SourceSide(PostgresSide):
    pooler: Pooler | None = None
    """The old side's PgBouncer, for a switch at the pooler (see :class:`Pooler`); needs ``replication.reverse``
    (the target takes the old app's writes from the promotion on)."""
    keep_writing: list[PgIdent] = []
    """Roles the fence lets write after the cutover. What they write then stays on the old side: lost
    to the new one (the pre-flight warns). Ferry's own connection role always may."""

    @field_validator("keep_writing")
    @classmethod
    def _unique_kept(cls, v: list[str]) -> list[str]:
        return _unique(v, "", "role")

    @model_validator(mode="after")
    def _kept_not_app(self) -> SourceSide:
        both = sorted(set(self.keep_writing) & set(self.app_roles))
        if both:
            raise ValueError(
                f"role(s) {', '.join(both)} in both app_roles and keep_writing: the application's writes after the "
                "cutover would be lost; remove them from keep_writing"
            )
        return self


class ReverseReplication(Strict):
    """Replication from the target back to the old source, from the cutover until ``ferry_decommission``:
    every write the new side accepts reaches the old database, so a rollback after the cutover loses none."""

    publisher_conn_id: ConnId | None = None
    """The target as the old source's server reaches it (host and port seen from the VMs; the login needs
    REPLICATION, or rds_replication on RDS, and SELECT on the tables in scope). Default: target.conn_id."""
    publication: PgIdent | None = None
    """The publication on the target (default: ``ferry_<plan name>_reverse``)."""
    subscription: PgIdent | None = None
    """The subscription on the old source, and its slot on the target (default: ``ferry_<plan name>_reverse``)."""
    max_lag_bytes: Annotated[int, Field(ge=0)] = 64 * 1024 * 1024
    """Above this, the health check warns and ``ferry_decommission`` refuses to end the reverse replication."""


class Replication(Strict):
    publication: PgIdent | None = None
    subscription: PgIdent | None = None
    publisher_conn_id: ConnId | None = None
    """The source as the target server reaches it, for the subscription (default: source.conn_id)."""
    schemas: list[PgIdent] = ["public"]
    tables: list[NonEmpty] | None = None
    """Tables in scope as ``schema.table`` or ``table``; omitted means every table of ``schemas``."""
    exclude_tables: list[NonEmpty] = []
    allow_target_rows: bool = False
    reverse: ReverseReplication | None = None
    """Set up reverse replication at the cutover (see :class:`ReverseReplication`); omitted: the DNS switch
    is the point of no return."""
    ddl: Literal["carry", "refuse"] = "carry"
    """Schema changes made on the source during the replication window (logical replication carries rows, not
    DDL). ``carry``: ``ferry_schema_watch`` makes the target match, each statement in the ledger, and names what it
    cannot carry safely; ``refuse``: it fails at the first change, naming it, for teams that freeze migrations."""
    ddl_watch_interval_s: Annotated[int, Field(ge=10, le=3600)] = 60
    """How often ``ferry_schema_watch`` compares the schemas while the forward replication runs."""
    large_objects: Literal["copy", "out_of_scope"] = "copy"
    """Large objects (not replicated): D-day copies them inside the freeze and verifies them, or leaves
    them behind when they are out of scope."""

    @field_validator("schemas", "tables", "exclude_tables")
    @classmethod
    def _unique_names(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _unique(v, "", "name")


class Aws(Strict):
    conn_id: ConnId = "aws_default"
    region: NonEmpty = "us-east-1"


class Ledger(Strict):
    bucket: NonEmpty
    prefix: NonEmpty | None = None


class VmHost(Strict):
    name: NonEmpty
    ssh_conn_id: ConnId
    units: list[NonEmpty] = Field(min_length=1)
    """Units to stop on D-day, in stop order; they are started in reverse order."""
    stop_command: Annotated[str, Field(pattern=r"\{unit\}")] = "sudo systemctl stop {unit}"
    start_command: Annotated[str, Field(pattern=r"\{unit\}")] = "sudo systemctl start {unit}"
    status_command: Annotated[str, Field(pattern=r"\{unit\}")] = "systemctl is-active {unit}"
    """Exits 0 when the unit runs (as ``systemctl is-active`` does)."""


class BucketPair(Strict):
    source: NonEmpty
    target: NonEmpty


class Storage(Strict):
    source_conn_id: ConnId
    target_conn_id: ConnId
    buckets: list[BucketPair] = Field(min_length=1)

    @field_validator("buckets")
    @classmethod
    def _unique_targets(cls, v: list[BucketPair]) -> list[BucketPair]:
        return _unique(v, "target", "target bucket")


SsmPhase = Literal["staging", "production", "cutover"]


class SsmParameter(Strict):
    name: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_.\-/]+$")]
    secure: bool = False
    values: dict[SsmPhase, NonEmpty] = Field(min_length=1)
    """Value per phase; templated from the plan and Airflow connections (never a literal secret)."""


class Ssm(Strict):
    kms_key_id: NonEmpty | None = None
    parameters: list[SsmParameter] = []

    @field_validator("parameters")
    @classmethod
    def _unique_parameters(cls, v: list[SsmParameter]) -> list[SsmParameter]:
        return _unique(v, "name", "parameter")

    @model_validator(mode="after")
    def _kms_for_secure(self) -> Ssm:
        if any(p.secure for p in self.parameters) and not self.kms_key_id:
            raise ValueError("SecureString parameters need kms_key_id; set it to the key id, ARN or alias")
        return self


class ReadReplica(Strict):
    id: NonEmpty
    instance_class: NonEmpty


class Rds(Strict):
    instance_id: NonEmpty
    parameter_group: NonEmpty | None = None
    read_replicas: list[ReadReplica] = []

    @field_validator("read_replicas")
    @classmethod
    def _unique_replicas(cls, v: list[ReadReplica]) -> list[ReadReplica]:
        return _unique(v, "id", "read replica")


class Eks(Strict):
    cluster: NonEmpty
    nodegroups: list[NonEmpty] = []


class Deployment(Strict):
    name: NonEmpty
    replicas: Annotated[int, Field(ge=0)]
    image: NonEmpty | None = None


class Kubernetes(Strict):
    conn_id: ConnId
    namespace: NonEmpty
    deployments: list[Deployment] = Field(min_length=1)
    pgbouncer: NonEmpty | None = None

    @field_validator("deployments")
    @classmethod
    def _unique_deployments(cls, v: list[Deployment]) -> list[Deployment]:
        return _unique(v, "name", "deployment")

    @model_validator(mode="after")
    def _pgbouncer_in_scope(self) -> Kubernetes:
        if self.pgbouncer and self.pgbouncer not in {d.name for d in self.deployments}:
            raise ValueError(f"pgbouncer {self.pgbouncer!r} is not one of the deployments; add it to deployments")
        return self


class DnsRecord(Strict):
    name: HostName
    type: Literal["A", "AAAA", "CNAME"] = "CNAME"
    old_value: NonEmpty
    new_value: NonEmpty
    ttl: Annotated[int, Field(ge=1)] = 300
    low_ttl: Annotated[int, Field(ge=1)] = 60


class Dns(Strict):
    zone: HostName
    records: list[DnsRecord] = Field(min_length=1)

    @field_validator("records")
    @classmethod
    def _unique_records(cls, v: list[DnsRecord]) -> list[DnsRecord]:
        return _unique(v, "name", "record")

    @model_validator(mode="after")
    def _records_in_zone(self) -> Dns:
        outside = [r.name for r in self.records if r.name != self.zone and not r.name.endswith("." + self.zone)]
        if outside:
            raise ValueError(
                f"record(s) {', '.join(outside)} outside the zone {self.zone}; "
                f"use names ending in .{self.zone} or change the zone"
            )
        return self


Url = Annotated[str, Field(pattern=r"^https?://")]


class Webhooks(Strict):
    host: HostName
    recorder_bucket: NonEmpty
    recorder_prefix: NonEmpty = "events/"
    replay_url: Url | None = None
    """Where recorded webhooks go after the switch (the new app); or replay_conn_id, an HTTP connection."""
    replay_conn_id: ConnId | None = None
    old_app_url: Url | None = None
    """Where rollback replays them (the old app); or old_app_conn_id."""
    old_app_conn_id: ConnId | None = None
    recorder_address: HostName | None = None
    """The DNS name of the recorder's load balancer, where the webhook host points during the freeze."""
    order_key: list[NonEmpty] = ["data.object.customer", "data.object.id"]
    """Replay keeps the order of events with the same ordering key: the webhook's path (its provider) and
    the first of these dotted fields found in its JSON body (the object the event is about). Events of
    different keys are replayed in parallel; an event with none of them (or no JSON body) is ordered with
    every other such event of its provider. ``[]``: one order per provider."""
    replay_concurrency: Annotated[int, Field(ge=1, le=256)] = 32
    """Ordering keys replayed at once."""

    @model_validator(mode="after")
    def _one_destination_each(self) -> Webhooks:
        if (self.replay_url is None) == (self.replay_conn_id is None):
            raise ValueError("give exactly one of replay_url and replay_conn_id")
        if self.old_app_url is not None and self.old_app_conn_id is not None:
            raise ValueError("give at most one of old_app_url and old_app_conn_id")
        return self


class Thresholds(Strict):
    max_lag_bytes: Annotated[int, Field(ge=0)] = 64 * 1024 * 1024
    wal_retained_warn_ratio: Annotated[float, Field(gt=0, le=1)] = 0.8
    compare_mode: Literal["full", "counts", "tables"] = "full"
    compare_tables: list[NonEmpty] = []
    compare_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    compare_in_freeze: Literal["tail", "full"] = "tail"
    """``tail``: D-day compares every table while the application still writes, captures every row changed
    since (a logical decoding slot per side) and verifies in the write freeze only those rows and the
    ranges still unresolved; the freeze does not grow with the data. ``full``: the whole comparison runs
    in the freeze (for the cautious, and small databases)."""
    comparison_gate: Literal["auto", "person"] = "auto"
    """D-day's comparison in the freeze: ``auto`` goes on by itself once every table is verified equal (no person
    inside the write freeze; the go/no-go is decided before it, and any difference stops the freeze); ``person``
    asks at ``gate_comparison``, inside the freeze, as long as it takes to answer. A narrowed comparison
    (``compare_mode`` counts or tables) needs ``person``."""
    max_freeze_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    """D-day's guardrail: the longest the write freeze may last up to the promotion (fence to
    ``drop_subscription_and_sync_sequences``). The catch-up waits no longer than what is left of it, the comparison
    and the promotion refuse to start past it; then, or when any task of the freeze fails, D-day reverts by itself
    (``revert_freeze``: the source unfenced, the old app's units started again) and fails with a report saying why.
    Default: 30 s with ``comparison_gate: auto``, 900 s with ``person`` (a person answers inside the freeze)."""
    compare_live_retries: Annotated[int, Field(ge=0, le=100)] = 3
    """Times a range that differs while live is compared again before it is carried into the freeze."""
    compare_live_retry_wait_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    sequence_gap: Annotated[int, Field(ge=0)] = 1000
    statement_timeout_s: Annotated[int, Field(ge=1)] = 60

    @property
    def freeze_budget_s(self) -> float:
        """``max_freeze_s``, or its default for the comparison gate."""
        if self.max_freeze_s is not None:
            return self.max_freeze_s
        return 30.0 if self.comparison_gate == "auto" else 900.0

    @model_validator(mode="after")
    def _narrowed_needs_a_person(self) -> Thresholds:
        if self.compare_mode != "full" and self.comparison_gate == "auto":
            raise ValueError(
                f"compare_mode {self.compare_mode} does not verify every row, and comparison_gate auto goes on "
                "without a person: set comparison_gate: person (someone decides at gate_comparison), or "
                "compare_mode: full"
            )
        return self


class Plan(Strict):
    """A whole migration plan."""

    name: Annotated[str, Field(pattern=_SLUG.pattern)]
    """The key every object name derives from: publication, subscription, slot, ledger prefix."""
    preflight: Preflight = Preflight()
    source: SourceSide
    target: PostgresSide
    replication: Replication = Replication()
    aws: Aws = Aws()
    ledger: Ledger
    vms: list[VmHost] = []
    storage: Storage | None = None
    ssm: Ssm = Ssm()
    rds: Rds | None = None
    eks: Eks | None = None
    kubernetes: Kubernetes | None = None
    dns: Dns | None = None
    webhooks: Webhooks | None = None
    thresholds: Thresholds = Thresholds()
    report_dir: NonEmpty | None = None

    @field_validator("vms")
    @classmethod
    def _unique_vms(cls, v: list[VmHost]) -> list[VmHost]:
        return _unique(v, "name", "host")

    @model_validator(mode="after")
    def _webhook_host_in_dns(self) -> Plan:
        if self.webhooks and self.webhooks.recorder_address:
            if not self.dns or self.webhooks.host not in {r.name for r in self.dns.records}:
                raise ValueError(
                    f"webhooks.host {self.webhooks.host} must be one of dns.records to be routed to the recorder; add it"
                )
        return self

    @model_validator(mode="after")
    def _pooler_needs(self) -> Plan:
        pooler = self.source.pooler
        if pooler is None:
            return self
        if pooler.vm not in {host.name for host in self.vms}:
            raise ValueError(
                f"source.pooler.vm {pooler.vm} is not one of vms[].name: name the VM PgBouncer runs on, with its "
                "ssh_conn_id, under vms"
            )
        if self.replication.reverse is None:
            raise ValueError(
                "source.pooler needs replication.reverse: from the promotion on, the old app writes to the target "
                "through the pooler, and only the reverse replication brings those writes back on a rollback; add "
                "replication.reverse, or remove source.pooler (D-day then stops the old app for the freeze)"
            )
        return self

    @model_validator(mode="after")
    def _compare_tables_for_mode(self) -> Plan:
        if self.thresholds.compare_mode == "tables" and not self.thresholds.compare_tables:
            raise ValueError("thresholds.compare_mode is 'tables' but thresholds.compare_tables is empty; list them")
        return self

    @property
    def key(self) -> str:
        """The plan's name as a PostgreSQL identifier fragment."""
        return self.name.replace("-", "_")

    @property
    def publication(self) -> str:
        return self.replication.publication or f"ferry_{self.key}"

    @property
    def subscription(self) -> str:
        return self.replication.subscription or f"ferry_{self.key}"

    @property
    def reverse_publication(self) -> str:
        reverse = self.replication.reverse
        return (reverse and reverse.publication) or f"ferry_{self.key}_reverse"

    @property
    def reverse_subscription(self) -> str:
        reverse = self.replication.reverse
        return (reverse and reverse.subscription) or f"ferry_{self.key}_reverse"

    @property
    def pooler_vm(self) -> VmHost | None:
        """The VM of ``source.pooler``, or None without a pooler."""
        pooler = self.source.pooler
        return None if pooler is None else next(h for h in self.vms if h.name == pooler.vm)

    @property
    def ledger_prefix(self) -> str:
        return (self.ledger.prefix or f"ferry/{self.name}").strip("/")

    def connections(self) -> dict[str, str]:
        """Every Airflow connection the plan names, mapped to the kind of system behind it."""
        found: dict[str, str] = {self.source.conn_id: "postgres", self.target.conn_id: "postgres"}
        if self.replication.reverse and self.replication.reverse.publisher_conn_id:
            found.setdefault(self.replication.reverse.publisher_conn_id, "postgres")
        found.setdefault(self.aws.conn_id, "aws")
        for host in self.vms:
            found.setdefault(host.ssh_conn_id, "ssh")
        if self.source.pooler:
            found.setdefault(self.source.pooler.admin_conn_id, "pgbouncer")
        if self.storage:
            found.setdefault(self.storage.source_conn_id, "s3")
            found.setdefault(self.storage.target_conn_id, "s3")
        if self.kubernetes:
            found.setdefault(self.kubernetes.conn_id, "kubernetes")
        if self.webhooks:
            for conn_id in (self.webhooks.replay_conn_id, self.webhooks.old_app_conn_id):
                if conn_id:
                    found.setdefault(conn_id, "http")
        return found


# The plan sections each stage cannot do without, and the tasks that need them: checked when its DAG is
# parsed and by its pre-flight, before the stage changes anything.
STAGE_SECTIONS: dict[str, dict[str, str]] = {
    "ferry_week_prior": {"kubernetes": "review_new_cluster"},
    "ferry_day_before": {
        "kubernetes": "deploy_webhook_recorder, scale_down_deployments",
        "webhooks": "deploy_webhook_recorder",
        "dns": "lower_dns_ttls",
    },
    "ferry_d_day": {
        "vms": "stop_vm_services",
        "rds": "create_read_replicas",
        "kubernetes": "restore_deployments, restart_pgbouncer",
        "dns": "switch_dns",
        "webhooks": "route_webhooks_to_recorder, replay_webhooks",
    },
}


def missing_sections(plan: Plan, stage: str) -> list[tuple[str, str]]:
    """The sections ``stage`` needs that ``plan`` lacks, each with the tasks that need it."""
    return [(section, tasks) for section, tasks in STAGE_SECTIONS.get(stage, {}).items() if not getattr(plan, section)]


def require_sections(plan: Plan, stage: str, source: str = "the plan") -> Plan:
    """``plan`` when it has every section ``stage`` needs; else a :class:`PlanError` naming each."""
    missing = missing_sections(plan, stage)
    if missing:
        raise PlanError(
            source,
            [
                (section, f"{stage} needs it ({tasks}); add it (see include/plan.example.yaml)")
                for section, tasks in missing
            ],
        )
    return plan


class PlanError(ValueError):
    """A plan that cannot be used, with every problem found, each with its field path and fix."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"The Ferry plan {source} has {len(problems)} problem(s); fix each and parse again:"]
        lines += [f"  - {path or '(top level)'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


def _loc_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-after", "list[", "dict[", "literal[")):
            continue
        else:
            path += f".{part}" if path else part
    return path


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The plan section class at a location, to list the keys it allows."""
    current: Any = Plan
    for part in loc:
        while True:
            origin = typing.get_origin(current)
            if origin is Annotated:
                current = typing.get_args(current)[0]
            elif origin in (typing.Union, types.UnionType):
                current = next(a for a in typing.get_args(current) if a is not type(None))
            elif origin is list and isinstance(part, int):
                current = typing.get_args(current)[0]
                break
            else:
                break
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = current.model_fields[part].annotation
    while typing.get_origin(current) in (Annotated, typing.Union, types.UnionType):
        current = next(a for a in typing.get_args(current) if a is not type(None))
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _fix_hint(error: dict[str, Any]) -> str:
    kind, loc, msg = error["type"], error["loc"], error["msg"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see include/plan.example.yaml"
        return f"unknown key {loc[-1]!r}; remove it or correct its spelling (allowed here: {allowed})"
    if kind == "missing":
        return "required; add it (see include/plan.example.yaml)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{msg.lower()}; write a whole number, got {error.get('input')!r}"
    if kind == "greater_than_equal":
        return f"must be at least {error['ctx']['ge']}, got {error.get('input')!r}"
    if kind == "string_too_short":
        return "must not be empty; give a value or remove the key to use the default"
    if kind == "too_short":
        return f"{msg.lower()}; list at least one"
    if kind == "literal_error":
        return f"{msg.lower()}, got {error.get('input')!r}"
    if kind == "string_pattern_mismatch" and loc and loc[-1] == "name" and len(loc) == 1:
        return "must be a short slug (lower case letters, digits, '-'; starting with a letter), e.g. acme-saas"
    return f"{msg}; got {error.get('input')!r}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping instead of keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_plan(text: str, source: str = "<text>") -> Plan:
    """Validate plan YAML text; raise :class:`PlanError` listing every problem."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PlanError(source, [("", f"not valid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        raise PlanError(source, [("", "the plan must be a YAML mapping of sections (name, source, target, ...)")])
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = [(_loc_path(e["loc"]), _fix_hint(e)) for e in exc.errors(include_url=False)]
        raise PlanError(source, problems) from None


def plan_source(variable_value: str | None = None) -> str:
    """Where the plan comes from: the Airflow Variable ``ferry_plan``, else ``$FERRY_PLAN``, else the example.

    The value is a path to the YAML file, or the YAML itself (any value spanning lines, or a
    flow mapping starting with ``{``).
    """
    return (
        variable_value
        or os.environ.get(f"AIRFLOW_VAR_{PLAN_VARIABLE.upper()}")
        or os.environ.get(PLAN_ENV)
        or str(EXAMPLE_PLAN)
    )


def load_plan(value: str | Path | None = None) -> Plan:
    """Load and validate a plan: ``value`` is a path or the YAML itself (default: :func:`plan_source`).

    The one loader of parse time (the DAG files, with the environment's choice) and run time
    (:func:`load_runtime_plan`, with the Airflow Variable's).
    """
    chosen = str(value) if value is not None else plan_source()
    if "\n" in chosen.strip() or chosen.lstrip().startswith("{"):
        return parse_plan(chosen, f"the YAML of the Airflow Variable {PLAN_VARIABLE} (or ${PLAN_ENV})")
    try:
        text = Path(chosen).read_text()
    except OSError as exc:
        raise PlanError(
            chosen,
            [
                (
                    "",
                    f"cannot read the plan ({exc.strerror}); set the Airflow Variable {PLAN_VARIABLE} or "
                    f"{PLAN_ENV} to its path or to the YAML itself",
                )
            ],
        ) from None
    return parse_plan(text, chosen)


def load_runtime_plan() -> Plan:
    """The plan as a task sees it: the Airflow Variable ``ferry_plan`` wins over the environment."""
    from airflow.sdk import Variable

    return load_plan(Variable.get(PLAN_VARIABLE, default=None))


def in_scope(plan: Plan, tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tables the plan migrates, of ``tables`` (rows with ``schema`` and ``table``):
    ``replication.tables`` (all when omitted) less ``replication.exclude_tables``."""

    def named(row: dict[str, Any], names: list[str]) -> bool:
        return f"{row['schema']}.{row['table']}" in names or row["table"] in names

    wanted = plan.replication.tables
    return [t for t in tables if (wanted is None or named(t, wanted)) and not named(t, plan.replication.exclude_tables)]
