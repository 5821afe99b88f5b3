"""Pre-flight checks of reach and replication: every connection answers, the source can publish, replication is healthy."""

from __future__ import annotations

from airflow.sdk import BaseHook

from ferry.capture import capture_slot
from ferry.checks.base import CheckResult, source_hook, target_hook
from ferry.checks.schema import apply_stoppers, explain_apply_errors
from ferry.guards import Link, forward_link, replication_health, reverse_link
from ferry.hooks.postgres import subscription_conninfo
from ferry.hooks.replication import ReplicationHook
from ferry.plan import Plan


def _ping(kind: str, conn_id: str, plan: Plan) -> str:
    """Reach one system and say what answered; raise on failure."""
    if kind == "postgres":
        database = plan.source.database if conn_id == plan.source.conn_id else plan.target.database
        row = ReplicationHook(conn_id, database, plan.thresholds.statement_timeout_s).fetch("ping")[0]
        return f"PostgreSQL {row['version']}, database {row['database']} as {row['user']}"
    if kind == "aws":
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        identity = AwsBaseHook(aws_conn_id=conn_id, client_type="sts").conn.get_caller_identity()
        return f"AWS account {identity['Account']}"
    if kind == "s3":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        buckets = S3Hook(aws_conn_id=conn_id).get_conn().list_buckets()["Buckets"]
        return f"S3-compatible storage, {len(buckets)} buckets"
    if kind == "http":
        import httpx

        conn = BaseHook.get_connection(conn_id)
        response = httpx.get(f"{conn.schema or 'http'}://{conn.host}:{conn.port or 80}/", timeout=10)
        return f"HTTP {response.status_code} from {conn.host}"
    if kind == "ssh":
        from ferry.hooks.vms import VmHook

        return f"SSH to {VmHook(conn_id).run('uname -n', timeout=30)[1]} (host key verified)"
    if kind == "kubernetes":
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        namespace = plan.kubernetes.namespace if plan.kubernetes else "default"
        KubernetesHook(conn_id=conn_id).core_v1_client.read_namespace(namespace)
        return f"Kubernetes namespace {namespace}"
    if kind == "pgbouncer":
        from ferry.hooks.pooler import PoolerHook, repoint_config
        from ferry.hooks.vms import VmHook

        pooler = PoolerHook(plan)
        entry = pooler.entry()
        if entry["paused"]:
            raise RuntimeError(
                f"PgBouncer's {pooler.database} is PAUSED: the old app's queries wait. A D-day stopped in its freeze "
                "without giving it back? Trigger ferry_rollback (restore_pooler resumes it)"
            )
        text = pooler.read_config(VmHook(pooler.vm.ssh_conn_id))
        repoint_config(text, pooler.database, str(entry["host"]), int(entry["port"] or 5432), str(entry["dbname"]))
        return (
            f"PgBouncer: {pooler.database} to {entry['host']}:{entry['port']}/{entry['dbname']}, not paused; its "
            f"entry found in {pooler.pooler.config_path} on {pooler.vm.name}"
        )
    raise ValueError(f"no connectivity check for {kind}")


def check_connections(plan: Plan) -> CheckResult:
    """Every connection the plan names answers."""
    findings, failed = [], []
    for conn_id, kind in plan.connections().items():
        try:
            findings.append(f"{conn_id} ({kind}): {_ping(kind, conn_id, plan)}")
        except Exception as exc:  # noqa: BLE001 - every failure is a finding, whatever its type
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            findings.append(f"{conn_id} ({kind}): UNREACHABLE: {reason}")
            failed.append(conn_id)
    if failed:
        return CheckResult(
            "connections",
            "fail",
            f"{len(failed)} of {len(findings)} connections do not answer: {', '.join(failed)}",
            findings,
            "Check each connection's host, port, credentials and network path in Admin > Connections "
            "(or its AIRFLOW_CONN_<ID> variable), then run ferry_preflight again.",
        )
    return CheckResult("connections", "pass", f"all {len(findings)} connections answer", findings)


def check_source_replication_settings(plan: Plan) -> CheckResult:
    """The source can publish: ``wal_level=logical`` and free replication slots and WAL senders."""
    s = source_hook(plan).get_replication_settings()
    slot_exists = source_hook(plan).get_slot_status(plan.subscription) is not None
    # The subscription needs one slot and one sender, and its initial copy a temporary pair per sync worker.
    needed = 0 if slot_exists else 1
    wanted = 0 if slot_exists else 3
    free_slots = s["max_replication_slots"] - s["used_replication_slots"]
    free_senders = s["max_wal_senders"] - s["used_wal_senders"]
    findings = [
        f"wal_level = {s['wal_level']}",
        f"replication slots: {s['used_replication_slots']} used of {s['max_replication_slots']} ({free_slots} free)",
        f"WAL senders: {s['used_wal_senders']} used of {s['max_wal_senders']} ({free_senders} free)",
        f"max_slot_wal_keep_size = {s['max_slot_wal_keep_size']}",
        f"Ferry's slot {plan.subscription}: {'exists' if slot_exists else 'not created yet'}",
    ]
    problems, remedies = [], []
    if s["wal_level"] != "logical":
        problems.append(f"wal_level is {s['wal_level']}, logical replication needs logical")
        remedies.append("ALTER SYSTEM SET wal_level = logical; then restart the source PostgreSQL")
    if free_slots < needed or free_senders < needed:
        problems.append("no free replication slot or WAL sender for the subscription")
        remedies.append(
            "raise max_replication_slots and max_wal_senders (ALTER SYSTEM SET ...; restart), "
            "or drop unused slots with pg_drop_replication_slot()"
        )
    if problems:
        return CheckResult("source_replication_settings", "fail", "; ".join(problems), findings, "; ".join(remedies))
    if free_slots < wanted or free_senders < wanted:
        return CheckResult(
            "source_replication_settings",
            "warn",
            f"only {min(free_slots, free_senders)} free slot(s)/sender(s): "
            "the initial copy will sync fewer tables at once",
            findings,
            f"raise max_replication_slots and max_wal_senders to leave at least {wanted} free",
        )
    return CheckResult("source_replication_settings", "pass", "source is ready to publish", findings)


def _health_findings(health: dict, link: Link) -> list[str]:
    return [
        f"subscription {health['subscription']} on the {link.subscriber_label}: enabled={health['enabled']}, "
        f"apply worker {'running' if health['worker_running'] else 'NOT running'}, apply errors={health['apply_errors']}",
        f"slot on the {link.publisher_label}: "
        + (
            "MISSING"
            if health["slot_active"] is None
            else f"active={health['slot_active']}, wal_status={health['wal_status']}, lag={health['lag_bytes']} "
            f"bytes, retained WAL={health['retained_bytes']} bytes, "
            f"max_slot_wal_keep_size={health['max_slot_wal_keep_bytes'] or 'unlimited'}"
        ),
    ]


def _health_result(name: str, health: dict, findings: list[str], remedy: str, ok: str) -> CheckResult:
    """One verdict from :func:`replication_health`, the same rules for both directions: a problem fails, a warning
    or lag above its threshold warns."""
    warnings = health["warnings"] + ([health["behind"]] if health["behind"] else [])
    if health["problems"]:
        return CheckResult(name, "fail", "; ".join(health["problems"] + warnings), findings, remedy)
    if warnings:
        return CheckResult(name, "warn", "; ".join(warnings), findings, remedy)
    return CheckResult(name, "pass", ok, findings)


def check_replication_health(plan: Plan) -> CheckResult:
    """When the subscription exists: enabled, worker running, no apply errors, lag and retained WAL in bounds
    (:func:`ferry.guards.replication_health`, as for the reverse replication)."""
    target = target_hook(plan)
    sub = target.get_subscription_status(plan.subscription)
    if sub is None:
        return CheckResult(
            "replication_health",
            "skip",
            f"subscription {plan.subscription} does not exist yet (ferry_week_prior creates it)",
        )
    link = forward_link(plan, source_hook(plan), target)
    health = replication_health(link)
    findings = _health_findings(health, link)
    findings[0] += f", sync errors={sub['sync_error_count']}, tables still copying={sub['tables_not_ready']}"
    remedy = (
        f"After fixing the cause: ALTER SUBSCRIPTION {plan.subscription} ENABLE if it is disabled. If the slot lost "
        "WAL, drop and recreate the subscription (ferry_rollback, then ferry_week_prior)."
    )
    stuck = health["apply_errors"] or not health["enabled"] or not health["worker_running"]
    if stuck:
        # The statistics count the apply's errors, not their text: a schema difference that stops the apply is
        # its cause unless the target refuses a row itself.
        causes = apply_stoppers(plan)
        if causes:
            health["problems"].append(
                "the subscription's apply stops at rows the target's schema cannot take: "
                + "; ".join(d.what for d in causes)
            )
            findings += [f"cause: {d.finding()}" for d in causes]
        remedy = f"{explain_apply_errors(causes)} {remedy}"
    return _health_result("replication_health", health, findings, remedy, "replication is streaming")


def check_leftover_slots(plan: Plan) -> CheckResult:
    """No replication slot of Ferry's (named after the plan) is left behind on either side: an
    abandoned slot keeps every byte of WAL from its position on, until the disk fills."""
    expected = {("source", plan.subscription)}  # the subscription's own slot, while it replicates
    if target_hook(plan).get_subscription_status(plan.subscription) is None:
        expected = set()
    if source_hook(plan).get_subscription_status(plan.reverse_subscription) is not None:
        expected.add(("target", plan.reverse_subscription))  # the reverse replication's, until decommission
    prefix = f"ferry_{plan.key}"
    capture = capture_slot(plan)
    found = [
        (side, slot)
        for side, hook in (("source", source_hook(plan)), ("target", target_hook(plan)))
        for slot in hook.get_slots(prefix)
    ]
    leftover = [(side, s) for side, s in found if (side, s["slot_name"]) not in expected]
    findings = [
        f"{side}: slot {s['slot_name']} ({s['slot_type']}{', ' + s['plugin'] if s['plugin'] else ''}"
        + (
            "; D-day's change capture, dropped by D-day after the cutover or by ferry_rollback"
            if s["slot_name"] == capture
            else ""
        )
        + "), "
        f"active={s['active']}, keeps {s['retained_bytes'] or 0} bytes of WAL, wal_status={s['wal_status']}"
        + ("" if (side, s["slot_name"]) in expected else "; LEFT BEHIND")
        for side, s in found
    ]
    if not leftover:
        return CheckResult("leftover_slots", "pass", f"no slot of Ferry's left behind ({len(found)} in use)", findings)
    return CheckResult(
        "leftover_slots",
        "warn",
        f"{len(leftover)} slot(s) of Ferry's left behind: "
        + ", ".join(f"{side} {s['slot_name']} ({s['retained_bytes'] or 0} bytes of WAL)" for side, s in leftover),
        findings,
        "A slot nobody reads keeps WAL until the disk fills. If no Ferry run still needs it, drop it on its side: "
        "SELECT pg_drop_replication_slot('<slot>'); (ferry_rollback drops D-day's change capture slots, and with "
        "undo_all_stages the others it recorded).",
    )


def check_change_capture(plan: Plan) -> CheckResult:
    """D-day's change capture can start on both sides: ``wal_level=logical`` (on RDS:
    ``rds.logical_replication=1``), a free replication slot, and a login allowed to decode."""
    if plan.thresholds.compare_in_freeze == "full":
        return CheckResult("change_capture", "pass", "not used: thresholds.compare_in_freeze is 'full'")
    slot = capture_slot(plan)
    findings, problems = [], []
    for side, hook in (("source", source_hook(plan)), ("target", target_hook(plan))):
        s = hook.fetch_one("capture_settings", slot_name=slot)
        findings.append(
            f"{side}: wal_level={s['wal_level']}, {s['free_slots']} free replication slot(s), login {s['login']} "
            f"{'may' if s['can_decode'] else 'may NOT'} decode, slot {slot} {'exists' if s['slot_exists'] else 'absent'}"
        )
        if s["wal_level"] != "logical":
            problems.append(
                f"{side}: wal_level is {s['wal_level']}; set wal_level = logical (RDS: rds.logical_replication = 1 "
                "in the parameter group) and restart"
            )
        if s["free_slots"] < 1 and not s["slot_exists"]:
            problems.append(f"{side}: no free replication slot; raise max_replication_slots (restart)")
        if not s["can_decode"]:
            problems.append(
                f"{side}: {s['login']} may not read logical decoding; ALTER ROLE {s['login']} REPLICATION "
                "(RDS: GRANT rds_replication TO the login)"
            )
    if problems:
        return CheckResult(
            "change_capture",
            "fail",
            f"D-day's change capture cannot start: {'; '.join(problems)}",
            findings,
            "Fix each named setting, or set thresholds.compare_in_freeze: full (the whole comparison in the freeze).",
        )
    return CheckResult("change_capture", "pass", "D-day's change capture can start on both sides", findings)


def check_reverse_replication(plan: Plan) -> CheckResult:
    """With ``replication.reverse``: before D-day, that it can be set up (the target publishes: ``wal_level`` or
    ``rds.logical_replication``, a free slot and sender; the reverse login may replicate; the old source may
    subscribe, and its server reaches the target: :func:`probe_route_to_target`); after the cutover, its health
    (subscription, apply worker, errors, lag, WAL kept on the target)."""
    reverse = plan.replication.reverse
    if reverse is None:
        return CheckResult(
            "reverse_replication",
            "pass",
            "not set up: the plan has no replication.reverse, so D-day's DNS switch is the point of no return",
        )
    name = plan.reverse_subscription
    source, target = source_hook(plan), target_hook(plan)
    if source.get_subscription_status(name) is not None:
        link = reverse_link(plan, source, target)
        health = replication_health(link)
        remedy = (
            "Read the old source's server log; fix the cause (replay a schema change made on the new side on the old "
            f"one too), then ALTER SUBSCRIPTION {name} ENABLE. Until then a rollback after the cutover would lose writes."
        )
        return _health_result(
            "reverse_replication",
            health,
            _health_findings(health, link),
            remedy,
            "the reverse replication streams the new side's writes back",
        )
    findings, problems = [], []
    t = target.get_replication_settings()
    findings.append(
        f"on the target, wal_level={t['wal_level']}, slots {t['used_replication_slots']}/{t['max_replication_slots']}, "
        f"WAL senders {t['used_wal_senders']}/{t['max_wal_senders']}"
    )
    if t["wal_level"] != "logical":
        problems.append(
            "target: wal_level is not logical; on RDS set rds.logical_replication = 1 in the parameter group and reboot"
        )
    if t["max_replication_slots"] - t["used_replication_slots"] < 1 or t["max_wal_senders"] - t["used_wal_senders"] < 1:
        problems.append(
            "target: no free replication slot or WAL sender; raise max_replication_slots and max_wal_senders"
        )
    conn_id = reverse.publisher_conn_id or plan.target.conn_id
    try:
        publisher = ReplicationHook(conn_id, plan.target.database, plan.thresholds.statement_timeout_s)
        login = publisher.fetch_one("capture_settings", slot_name=name)
        findings.append(f"{conn_id}: login {login['login']} {'may' if login['can_decode'] else 'may NOT'} replicate")
        if not login["can_decode"]:
            problems.append(
                f"{conn_id}: {login['login']} may not replicate; ALTER ROLE {login['login']} REPLICATION "
                "(RDS: GRANT rds_replication TO it)"
            )
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the finding
        problems.append(f"{conn_id} (replication.reverse.publisher_conn_id) does not answer: {type(exc).__name__}")
    s = source.fetch_one("reverse_prerequisites")
    findings.append(
        f"old source: superuser={s['superuser']}, logical replication workers {s['workers_in_use']}/"
        f"{s['max_logical_replication_workers']}"
    )
    if not s["superuser"] and s["server_version_num"] < 160000:
        problems.append(
            f"old source: it runs PostgreSQL {s['server_version_num'] // 10000} and Ferry's login "
            f"{s['login']} is not a superuser; only PostgreSQL 16 and later let a login that is not one create a "
            "subscription (through pg_create_subscription), and a managed service gives no superuser: upgrade the "
            "old cluster to 16 or later before D-day (DigitalOcean: Upgrade in the cluster's settings), or remove "
            "replication.reverse from the plan (the DNS switch is then the point of no return)"
        )
    if s["workers_in_use"] >= s["max_logical_replication_workers"]:
        problems.append("old source: no free logical replication worker; raise max_logical_replication_workers")
    if s["superuser"] or s["server_version_num"] >= 160000:
        problems += probe_route_to_target(plan, source, conn_id, findings)
    if problems:
        return CheckResult(
            "reverse_replication",
            "fail",
            "the reverse replication cannot be set up: " + "; ".join(problems),
            findings,
            "Fix each named setting, or remove replication.reverse from the plan (the DNS switch then stays the "
            "point of no return).",
        )
    return CheckResult("reverse_replication", "pass", "the reverse replication can be set up at the cutover", findings)


def probe_route_to_target(plan: Plan, source: ReplicationHook, conn_id: str, findings: list[str]) -> list[str]:
    """The old source's server connects to the target as D-day's reverse subscription will (its connection
    string, from its own network), in a ``CREATE SUBSCRIPTION`` rolled back: nothing is left on either side.
    Returns the problem, if any; adds the finding."""
    try:
        publisher = BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - a missing connection: the connections check names it
        return [f"{conn_id} (replication.reverse.publisher_conn_id) is not an Airflow connection"]
    where = f"{publisher.host}:{publisher.port or 5432}"
    conninfo = subscription_conninfo(publisher, plan.target.database, plan.reverse_subscription, connect_timeout=10)
    try:
        source.probe_subscription(f"{plan.reverse_subscription}_probe", plan.reverse_publication, conninfo)
    except Exception as exc:  # noqa: BLE001 - the server's reason is the finding
        reason = " ".join(str(exc).split()) or type(exc).__name__
        findings.append(f"the old source's server could NOT connect to {where} ({conn_id}): {reason}")
        return [
            f"old source: its server cannot reach the target at {where} as replication.reverse.publisher_conn_id "
            f"({conn_id}) says ({reason}); give that connection the target's address as the old server reaches it, "
            "and allow that server in the target's security group and pg_hba"
        ]
    findings.append(
        f"the old source's server connected to {where} ({conn_id}) as the reverse subscription will (probe rolled back)"
    )
    return []
