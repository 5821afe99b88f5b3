"""Rehearse the whole migration on the local stand, as an operator would run it.

Run by ``make rehearsal`` with the stand's env loaded. The stand starts afresh (a migration
starts from the old side), the write load runs and webhooks arrive throughout. Airflow runs as
its users run it (``include/deployment.py``: api-server, scheduler, dag-processor, triggerer and
two Celery workers, metadata on PostgreSQL); each stage is triggered through the REST API and
D-day's human gates are answered through it, the way the UI does, each stage within a deadline.
Every stage's log and report goes to ``$AIRFLOW_HOME/rehearsals/<time>/``; the summary gives the
freeze window, the D-day duration, rows on both sides and webhooks sent, delivered and lost.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import httpx

from deployment import Deployment, GateAnswerer, StageTimeout

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["ferry_preflight", "ferry_week_prior", "ferry_day_before", "ferry_d_day"]
# Each stage's deadline at up to 2M rows (longer in proportion above): past it the run says what is still
# running or waiting and fails; it never hangs.
STAGE_DEADLINES_S = {
    "ferry_preflight": 600,
    "ferry_week_prior": 1800,
    "ferry_day_before": 1200,
    "ferry_d_day": 1800,
    "ferry_rollback": 1200,
    "ferry_rollback_after_cutover": 1200,
}


class DnsProviders(threading.Thread):
    """Billing providers that send each webhook where the webhook host's DNS record points now (read from
    Route53 at most once a second, as a short TTL allows): the old app, the recorder or the new app."""

    def __init__(self, where: dict[str, str]):
        super().__init__(daemon=True)
        self.where = where  # record value -> URL
        self.tag = uuid.uuid4().hex[:8]  # this run's events: an earlier run's in the apps' files never count
        self.acked: list[str] = []
        self.stop = threading.Event()

    def resolve(self) -> str:
        from ferry.plan import load_plan
        from stand.users import route53_resolver

        if not hasattr(self, "lookup"):
            self.lookup = route53_resolver(load_plan().webhooks.host)
        value, _ttl = self.lookup()
        return self.where[value]

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            i, url, resolved = 0, self.resolve(), time.monotonic()
            while not self.stop.wait(0.2):
                if time.monotonic() - resolved >= 1:
                    try:
                        url, resolved = self.resolve(), time.monotonic()
                    except Exception:  # noqa: BLE001 - DNS did not answer: keep the last answer, as a resolver does
                        pass
                event_id = f"rehearsal_{self.tag}_{i}"
                try:
                    if client.post(url + "/webhooks/stripe", json=stripe_event(event_id, i)).status_code < 300:
                        self.acked.append(event_id)
                        i += 1
                except httpx.TransportError:
                    pass


def stripe_event(event_id: str, i: int) -> dict:
    """A billing event about one of 50 customers, shaped as Stripe's: the replay keeps each customer's events in
    order (the plan's ``webhooks.order_key``) and sends different customers' at once."""
    return {"id": event_id, "type": "invoice.paid", "data": {"object": {"customer": f"cus_{i % 50}"}}}


def dns_providers() -> DnsProviders:
    """Providers following the webhook host's record: its old value (the old app), the recorder's, its new one."""
    from ferry.plan import load_plan

    plan = load_plan()
    record = next(r for r in plan.dns.records if r.name == plan.webhooks.host)
    return DnsProviders(
        {
            record.old_value: http_url("AIRFLOW_CONN_OLD_APP"),
            record.new_value: http_url("AIRFLOW_CONN_NEW_APP"),
            plan.webhooks.recorder_address: http_url("AIRFLOW_CONN_WEBHOOK_RECORDER"),
        }
    )


def http_url(conn_env: str) -> str:
    conn = json.loads(os.environ[conn_env])
    return f"http://{conn['host']}:{conn['port']}"


def stage_deadline(dag_id: str) -> float:
    """Seconds a stage may take before the run gives up on it (``FERRY_STAGE_DEADLINE_S`` overrides all)."""
    if os.environ.get("FERRY_STAGE_DEADLINE_S"):
        return float(os.environ["FERRY_STAGE_DEADLINE_S"])
    from stand.core import Stand

    rows = int(Stand().state().get("rows", 1_000_000))
    return STAGE_DEADLINES_S.get(dag_id, 1200) * max(1.0, rows / 2_000_000)


class StageRun(NamedTuple):
    """One stage as the rehearsal ran it: whether it passed, how long it took, where its log is, and each failed
    task with the error it raised (or why the stage did not end)."""

    dag_id: str
    passed: bool
    seconds: float
    log: Path
    failures: list[str]

    def line(self, failure_expected: bool = False) -> str:
        outcome = "succeeded" if self.passed else ("stopped, as it must" if failure_expected else "FAILED")
        said = "".join(f"\n      {f}" for f in self.failures)
        return f"  {self.dag_id}: {outcome} in {self.seconds:.1f} s (log: {self.log}){said}"


def run_stage(deployment: Deployment, dag_id: str, folder: Path) -> StageRun:
    """Trigger a stage on the deployment and wait for it, within its deadline; its task logs in one file. A run
    past its deadline is a failed stage, named with what was still running."""
    log = folder / f"{dag_id}.log"
    started = time.monotonic()
    try:
        state, run_id = deployment.run_stage(dag_id, stage_deadline(dag_id), log)
    except StageTimeout as exc:
        print(f"  {exc}", flush=True)
        return StageRun(dag_id, False, time.monotonic() - started, log, [str(exc).splitlines()[0]])
    failures = [] if state == "success" else deployment.failures(dag_id, run_id) or [f"the run ended {state}"]
    return StageRun(dag_id, state == "success", time.monotonic() - started, log, failures)


def rehearsal_folder(suffix: str = "") -> Path:
    """A fresh folder for this rehearsal's logs and reports; Ferry's and the stand's code importable."""
    folder = Path(os.environ["AIRFLOW_HOME"]) / "rehearsals" / (datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + suffix)
    folder.mkdir(parents=True)
    os.environ["FERRY_REPORT_DIR"] = str(folder / "reports")
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]
    return folder


@contextmanager
def live_stand(folder: Path):
    """The stand as a migration meets it: Airflow deployed (``include/deployment.py``), the write load
    running, providers sending webhooks where the webhook host's DNS record points (the old app, the recorder,
    then the new app), the gates answered through the API. Yields (deployment, providers); everything
    is stopped on the way out."""
    from stand.control import load
    from stand.core import Stand

    stand = Stand()
    home = Path(os.environ["AIRFLOW_HOME"])
    deployment = Deployment(home=home, log_dir=folder / "deployment")
    print(f"  starting Airflow ({deployment.executor} executor: {', '.join(deployment.components)}) ...", flush=True)
    started = time.monotonic()
    deployment.start()
    print(f"  Airflow up in {time.monotonic() - started:.0f} s on {deployment.url}", flush=True)
    gates = GateAnswerer(deployment)
    providers = dns_providers()
    load(stand, "start", rate=50)
    gates.start()
    providers.start()
    try:
        yield deployment, providers
    finally:
        providers.stop.set()
        providers.join()
        gates.done.set()
        load(stand, "stop")
        deployment.stop()


def migrate(folder: Path, stages: list[str] = STAGES, after_week_prior=None) -> dict:
    """Run ``stages`` on the live stand; return what happened (stage timings, webhooks, the D-day report).
    ``after_week_prior`` (default :func:`add_table_after_week_prior`) runs once ferry_week_prior succeeded, with
    the load on, and returns the lines it has to say."""
    from stand.control import load_stats
    from stand.core import Stand

    stand = Stand()
    runs: list[StageRun] = []
    users = None
    with live_stand(folder) as (deployment, providers):
        for dag_id in stages:
            if dag_id == "ferry_d_day":  # after ferry_day_before lowered the TTL, as users meet D-day
                users = start_users(folder)
            runs.append(run_stage(deployment, dag_id, folder))
            print(runs[-1].line(), flush=True)
            if not runs[-1].passed:
                break
            if dag_id == "ferry_week_prior":
                for line in (after_week_prior or add_table_after_week_prior)():
                    print(f"  {line}", flush=True)
        time.sleep(1)
        if users is not None:
            stop_users(users)
    delivered = received_ids(stand, "new_app") | received_ids(stand, "old_app")  # DNS names one, then the other
    d_day = (
        sorted((folder / "reports" / "d_day").glob("d_day__*.json")) if (folder / "reports" / "d_day").exists() else []
    )
    return {
        "ok": all(r.passed for r in runs),
        "runs": runs,
        "timings": {r.dag_id: r.seconds for r in runs},
        "states": {r.dag_id: "success" if r.passed else "failed" for r in runs},
        "load": load_stats(stand),
        "acked": providers.acked,
        "delivered": delivered & set(providers.acked),
        "lost_webhooks": sorted(set(providers.acked) - delivered),
        "d_day_report": json.loads(d_day[-1].read_text()) if d_day else None,
        "users": users.summary() if users is not None else None,
    }


def start_users(folder: Path):
    """The application's users (stand.users.DnsUsers): they resolve the app's hostname through Route53, keep the
    answer for its TTL, and sign up (and read back) at whichever app it names, through that app's PgBouncer."""
    from ferry.plan import load_plan
    from stand.users import DnsUsers, route53_resolver

    record = load_plan().dns.records[0]
    users = DnsUsers(
        route53_resolver(record.name),
        {
            record.old_value: ("old_app", http_url("AIRFLOW_CONN_OLD_APP")),
            record.new_value: ("new_app", http_url("AIRFLOW_CONN_NEW_APP")),
        },
        folder / "users.csv",
    )
    users.start()
    print(f"  users started: {users.users} following {record.name} (TTL as Route53 answers), {folder / 'users.csv'}")
    return users


def stop_users(users, moved_within_s: float = 75) -> None:
    """Once every user's cached answer names the new side (their TTL expired after the DNS switch), or after
    ``moved_within_s``: stop them."""
    from ferry.plan import load_plan

    new = load_plan().dns.records[0].new_value
    deadline = time.monotonic() + moved_within_s
    while time.monotonic() < deadline and not (
        len(users.cache) == users.users and all(v == new for v, _ in users.cache.values())
    ):
        time.sleep(1)
    users.stop.set()
    users.join()


def main() -> int:
    if "--ddl" in sys.argv:
        return rehearse_ddl()
    if "--rollback" in sys.argv:
        return rehearse_rollback()
    if "--rollback-late" in sys.argv:
        return rehearse_rollback_late()
    folder = rehearsal_folder()
    print(f"Rehearsal with plan {os.environ['FERRY_PLAN']}; logs and reports in {folder}")
    result = migrate(folder)
    lines, ok = summary(result, folder)
    print("\n".join(lines))
    return 0 if ok else 1


def summary(result: dict, folder: Path) -> tuple[list[str], bool]:
    """What the rehearsal did, whatever happened: the reports written, the state of both sides, what was compared
    (rows and large objects the target lacks or holds otherwise), the write load, the webhooks, D-day's freeze;
    each stage that failed with the tasks that failed and their errors. A part that cannot be read (a side down)
    says so and the rest is still printed. Returns the lines and whether the rehearsal passed; sets
    ``result["rows_lost"]`` (None when not compared)."""
    lines = ["", "Reports:"]
    reports = (folder / "reports").rglob("*.md") if (folder / "reports").exists() else []
    for report in sorted(reports, key=lambda p: p.stat().st_mtime):
        lines.append(f"  {report.read_text().splitlines()[0].lstrip('# ')}: {report}")
    lines += ["", "State of the migration:"]
    try:
        lines += [f"  {line}" for line in migration_state()]
    except Exception as exc:  # noqa: BLE001 (the account must go on: say what could not be read)
        lines.append(f"  could not be read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    stats, lost, report = result["load"], result["lost_webhooks"], result["d_day_report"]
    freeze = report["freeze_window_s"] if report else None
    failed = [r for r in result["runs"] if not r.passed]
    for run in failed:
        lines.append("")
        lines.append(f"  {run.dag_id} did not succeed (log: {run.log}):")
        lines += [f"    {f}" for f in run.failures]
    try:
        reverse_caught_up()
        lost_per_table = lost_rows()
        rows_lost = sum(lost_per_table.values())
        compared = f"{rows_lost}" + (
            f" ({', '.join(f'{t}: {n:,}' for t, n in lost_per_table.items() if n)})" if rows_lost else ""
        )
    except Exception as exc:  # noqa: BLE001
        rows_lost, compared = (
            None,
            f"not compared: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
        )
    result["rows_lost"] = rows_lost
    lines += [
        "",
        f"  write load: {stats.get('committed', 0)} writes committed, {stats.get('refused', 0)} refused by the fence, "
        f"{stats.get('errors', 0)} failed",
        f"  users' view (the write load, through the old app's path): longest pause between two writes "
        f"{stats.get('longest_pause_s')} s, slowest write {stats.get('max_latency_s')} s, p99 {stats.get('p99_ms')} ms",
        f"  rows on the source that the target lacks or holds otherwise: {compared}",
        f"  webhooks: sent {len(result['acked'])}, delivered (old app before the switch, new app after) {len(result['delivered'])}, lost {len(lost)}",
        f"  D-day: {result['timings'].get('ferry_d_day', 0):.1f} s in all; write freeze (fence to target writable) "
        f"{freeze} s",
        f"  {users_line(report)}",
    ]
    people = result.get("users")
    if people is not None:
        from stand.users import line

        lines.append(f"  {line(people)}")
    # With the switch at the pooler no user's request may fail (without, the old app is down until DNS moves them).
    pooled = bool(report) and (report.get("users") or {}).get("switch") == "pooler"
    ok = result["ok"] and not lost and rows_lost == 0 and not (pooled and people and people["failed"])
    verdict = "passed" if ok else "FAILED"
    if failed:
        first = failed[0]
        verdict += f" at {first.dag_id}" + (f": {first.failures[0]}" if first.failures else "")
    elif rows_lost:
        verdict += f": {rows_lost} rows or large objects not on the target"
    elif lost:
        verdict += f": {len(lost)} webhooks lost"
    lines += ["", f"Rehearsal {verdict}; logs and reports in {folder}"]
    return lines, ok


def rehearse_rollback_late(soak_s: float = 30) -> int:
    """The whole migration with the write load and webhooks on; the load then moves to the new side (the target,
    through the application role, as the new app writes) for ``soak_s``; then ferry_rollback_after_cutover, the
    load still writing there until the fence refuses it. Every row the new side took must be on the old side,
    and every webhook acknowledged must reach an app."""
    from psycopg import sql

    from stand.control import load, load_stats
    from stand.core import Stand

    folder = rehearsal_folder("-rollback-late")
    stand = Stand()
    print(f"Late rollback rehearsal; logs and reports in {folder}")
    plan, source, target = plan_and_sides()
    tables = keyed_tables(source)
    passed: dict[str, bool] = {}
    with live_stand(folder) as (deployment, providers):
        for dag_id in STAGES:
            run = run_stage(deployment, dag_id, folder)
            passed[dag_id] = run.passed
            print(run.line(), flush=True)
            if not run.passed:
                break
        if all(passed.values()):
            before = {t: target.run_template("table_max_id", {"table": sql.SQL(t)})[0]["max_id"] or 0 for t in tables}
            load(stand, "start", rate=50, side="target")
            print(f"  the application writes on the new side for {soak_s:.0f} s", flush=True)
            time.sleep(soak_s)
            run = run_stage(deployment, "ferry_rollback_after_cutover", folder)
            passed[run.dag_id] = run.passed
            print(run.line(), flush=True)
            load(stand, "stop", side="target")
        providers.stop.set()
        providers.join()
        time.sleep(1)
    written = found = 0
    if passed.get("ferry_rollback_after_cutover") is not None:
        for table in tables:
            names = {"table": sql.SQL(table), "above": sql.Literal(before[table])}
            new_ids = {r["id"] for r in target.run_template("table_ids_above", names)}
            on_old = {r["id"] for r in source.run_template("table_ids_above", names)}
            written, found = written + len(new_ids), found + len(new_ids & on_old)
            print(f"  {table}: {len(new_ids)} rows written on the new side, {len(new_ids & on_old)} on the old side")
    stats = load_stats(stand, "target")
    delivered = received_ids(stand, "new_app") | received_ids(stand, "old_app")
    lost = sorted(set(providers.acked) - delivered)
    reports = sorted((folder / "reports" / "rollback_after_cutover").glob("*.json"))
    freeze = json.loads(reports[-1].read_text())["freeze_s"] if reports else None
    print(
        f"\n  write load on the new side: {stats.get('committed', 0)} writes committed, "
        f"{stats.get('refused', 0)} refused (the target fenced)"
    )
    old_path = load_stats(stand)
    print(
        f"  write load through the old app's PgBouncer (to the target after D-day, back to the source after the way "
        f"back): {old_path.get('committed', 0)} committed, {old_path.get('refused', 0)} refused, "
        f"{old_path.get('errors', 0)} failed, longest pause {old_path.get('longest_pause_s')} s"
    )
    print(f"  rows written on the new side after the cutover: {written}; of those on the old side: {found}")
    print(
        f"  webhooks: sent {len(providers.acked)}, delivered {len(delivered & set(providers.acked))}, lost {len(lost)}"
    )
    print(f"  the way back's write freeze (target fenced to old source writable): {freeze} s")
    ok = all(passed.values()) and "ferry_rollback_after_cutover" in passed and written > 0
    ok = ok and found == written and not lost
    print(
        f"rows_new_side={written} rows_on_old_side={found} webhooks_sent={len(providers.acked)} "
        f"webhooks_lost={len(lost)} freeze_back_s={freeze} ok={'yes' if ok else 'no'}"
    )
    print(f"\nLate rollback rehearsal {'passed' if ok else 'FAILED'}; logs and reports in {folder}")
    return 0 if ok else 1


def keyed_tables(hook) -> list[str]:
    """The tables in scope with an integer ``id`` primary key (their new rows are those above a max)."""
    return [r["table"] for r in hook.fetch("tables_with_id_key", schemas=["public"])]


def rehearse_rollback() -> int:
    """D-day with a divergence planted on the target: the comparison must stop it, then ferry_rollback
    must give the service back to the old side with nothing lost."""
    folder = rehearsal_folder("-rollback")
    from psycopg import Error, connect

    from ferry.hooks.replication import ReplicationHook
    from stand.core import Stand

    stand = Stand()
    print(f"Rollback rehearsal; logs and reports in {folder}")
    old_app = http_url("AIRFLOW_CONN_OLD_APP")
    passed = {}

    def stage(dag_id: str, failure_expected: bool = False) -> None:
        run = run_stage(deployment, dag_id, folder)
        passed[dag_id] = run.passed
        print(run.line(failure_expected), flush=True)

    # DNS never moves to the new app here: webhooks go to the old app, then the recorder, then the old app again.
    with live_stand(folder) as (deployment, providers):
        for dag_id in ("ferry_preflight", "ferry_week_prior", "ferry_day_before"):
            stage(dag_id)
        with ReplicationHook("ferry_target", "saas").session() as conn:  # a row the application never updates
            conn.execute("UPDATE customers SET name = 'diverged on the target' WHERE id = 7")
        print("  planted: customers id 7 changed on the target only", flush=True)
        stage("ferry_d_day", failure_expected=True)
        reverted = sorted((folder / "reports" / "d_day").glob("d_day_reverted__*.json"))
        revert = json.loads(reverted[-1].read_text()) if reverted else None
        print(
            f"  D-day reverted by itself ({', '.join(revert['failed_tasks'])} failed): the source unfenced "
            f"{revert['freeze_s']} s after the fence (thresholds.max_freeze_s {revert['max_freeze_s']:g}), the old "
            + ("app's PgBouncer resumed on the source" if revert.get("pooler_resumed") else "app's units running again")
            + f" {revert['old_app_started_s']} s after it"
            if revert
            else "  D-day did NOT revert its freeze by itself (no d_day_reverted report)",
            flush=True,
        )
        providers.stop.set()
        providers.join()
        stage("ferry_rollback")
    found = "keys changed: 7" in (folder / "ferry_d_day.log").read_text()
    serving = httpx.get(old_app + "/healthz", timeout=5).status_code == 200
    try:
        from stand.services.pgbouncer import PgBouncer

        # The application's own path: through the old side's PgBouncer, which must point at the source again.
        with connect(PgBouncer().dsn(stand), autocommit=True, prepare_threshold=None) as app:
            app.execute("INSERT INTO page_views (path, viewed_at) VALUES ('/after-rollback', now()) RETURNING 1")
            on = app.execute("SELECT inet_server_port()").fetchone()[0]
        writes_again = on == stand.port(1)
        if not writes_again:
            print(f"  the application's write went to port {on}, not the source's {stand.port(1)}")
    except Error as exc:
        print(f"  the application's write on the source failed: {type(exc).__name__}: {exc}".splitlines()[0])
        writes_again = False
    delivered = received_ids(stand, "old_app")
    lost = sorted(set(providers.acked) - delivered)
    print(f"\n  the comparison named the planted key: {found}")
    print(f"  old app serving: {serving}; the application writes on the source again: {writes_again}")
    print(
        f"  webhooks: sent {len(providers.acked)}, delivered to the old app {len(delivered & set(providers.acked))}, lost {len(lost)}"
    )
    ok = (
        passed["ferry_day_before"]
        and not passed["ferry_d_day"]
        and revert is not None
        and passed["ferry_rollback"]
        and found
        and serving
        and writes_again
        and not lost
    )
    print(f"\nRollback rehearsal {'passed' if ok else 'FAILED'}; logs and reports in {folder}")
    return 0 if ok else 1


def add_table_after_week_prior() -> list[str]:
    """A table the application gains after week prior (a migration deployed meanwhile): D-day must bring it in."""
    _, source, _ = plan_and_sides()
    with source.session() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS gift_cards (code text PRIMARY KEY, cents integer NOT NULL)")
        conn.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON gift_cards TO saas_app")
        conn.execute(
            "INSERT INTO gift_cards SELECT 'G' || i, i * 100 FROM generate_series(1, 500) i ON CONFLICT DO NOTHING"
        )
    return ["created public.gift_cards (500 rows) on the source after week prior: D-day's scope step must bring it in"]


class Migration(NamedTuple):
    """One migration of the release the DDL rehearsal ships during the replication window."""

    what: str
    ddl: list[str]
    carried: str  # on the target: true once the change is there
    write: str | None = None  # on the source, after every migration ran
    arrived: str | None = None  # on the target: true once the write is there


RELEASE = [
    Migration(
        "add a column with a default, and write it",
        ["ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'free'"],
        "SELECT count(*) = 1 FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname = 'tier'",
        "INSERT INTO customers (email, name, country, tier) VALUES ('ddl-tier@example.com', 'T', 'FR', 'gold')",
        "SELECT count(*) = 1 FROM customers WHERE email = 'ddl-tier@example.com' AND tier = 'gold'",
    ),
    Migration(
        "create an index",
        ["CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)"],
        "SELECT count(*) = 1 FROM pg_indexes WHERE indexname = 'events_kind_idx'",
    ),
    Migration(
        "create a table and write to it",
        [
            "CREATE TABLE coupons (id bigserial PRIMARY KEY, code text NOT NULL UNIQUE, percent integer NOT NULL)",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON coupons TO saas_app",
            "GRANT USAGE ON SEQUENCE coupons_id_seq TO saas_app",
        ],
        "SELECT to_regclass('public.coupons') IS NOT NULL",
        "INSERT INTO coupons (code, percent) SELECT 'C' || i, 10 + i % 40 FROM generate_series(1, 200) i",
        "SELECT to_regclass('public.coupons') IS NOT NULL AND (SELECT count(*) FROM coupons) = 200",
    ),
    Migration(
        "add next year's partition and write into it",
        [
            "CREATE TABLE usage_records_2028 PARTITION OF usage_records "
            "FOR VALUES FROM ('2028-01-01 00:00+00') TO ('2029-01-01 00:00+00')"
        ],
        "SELECT to_regclass('public.usage_records_2028') IS NOT NULL",
        "INSERT INTO usage_records (customer_id, recorded_at, units) VALUES (1, '2028-01-01 12:00+00', 5)",
        "SELECT count(*) = 1 FROM usage_records WHERE recorded_at = '2028-01-01 12:00+00'",
    ),
    Migration(
        "rename a column",
        ["ALTER TABLE subscriptions RENAME COLUMN canceled_at TO cancelled_at"],
        "SELECT count(*) = 1 FROM pg_attribute WHERE attrelid = 'subscriptions'::regclass AND attname = 'cancelled_at'",
        "UPDATE subscriptions SET cancelled_at = '2026-12-01 00:00+00' WHERE id = 1",
        "SELECT count(*) = 1 FROM subscriptions WHERE id = 1 AND cancelled_at = '2026-12-01 00:00+00'",
    ),
    Migration(
        "drop a column",
        ["ALTER TABLE events DROP COLUMN occurred_at"],
        "SELECT count(*) = 0 FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname = 'occurred_at' "
        "AND NOT attisdropped",
    ),
    Migration(
        "widen an integer to bigint",
        ["ALTER TABLE usage_records ALTER COLUMN units TYPE bigint"],
        "SELECT format_type(atttypid, atttypmod) = 'bigint' FROM pg_attribute "
        "WHERE attrelid = 'usage_records'::regclass AND attname = 'units'",
        "INSERT INTO usage_records (customer_id, recorded_at, units) VALUES (2, '2028-02-01 00:00+00', 5000000000)",
        "SELECT count(*) = 1 FROM usage_records WHERE units = 5000000000",
    ),
]


def ship_release(figures: dict) -> list[str]:
    """The application's release during the replication window, the write load on: every migration of
    :data:`RELEASE` run on the source (as the application's migrations run, with Ferry's login, which owns the
    tables), then a write needing each. Waits until every change is on the target and every write arrived
    (``ferry_schema_watch`` carries them), measuring how long each write waited; fills ``figures``."""
    from ferry.checks.schema import schema_differences

    plan, source, target = plan_and_sides()
    interval = plan.replication.ddl_watch_interval_s
    lines = [f"shipping a release of {len(RELEASE)} migrations on the source (ferry_schema_watch every {interval} s):"]
    with source.session() as conn:
        for migration in RELEASE:
            for statement in migration.ddl:
                conn.execute(statement)
        written = {}
        for migration in RELEASE:
            if migration.write:
                conn.execute(migration.write)
                written[migration.what] = time.monotonic()
    lines += [f"  {m.what}: {'; '.join(m.ddl)}" for m in RELEASE]
    stalls: dict[str, float] = {}
    deadline = time.monotonic() + 2 * interval + 120
    with target.session() as conn:
        while time.monotonic() < deadline:
            for migration in RELEASE:
                if migration.what in written and migration.what not in stalls:
                    try:
                        there = conn.execute(migration.arrived).fetchone()[0]
                    except Exception:  # noqa: BLE001 (the table or column is not on the target yet)
                        there = False
                    if there:
                        stalls[migration.what] = time.monotonic() - written[migration.what]
            carried = [m for m in RELEASE if conn.execute(m.carried).fetchone()[0]]
            if len(stalls) == len(written) and len(carried) == len(RELEASE):
                break
            time.sleep(0.5)
    found = schema_differences(plan)
    equal = not found.fixes and not found.missing
    figures.update(
        ddl_changes=len(RELEASE),
        carried=len(carried),
        longest_apply_stall_s=round(max(stalls.values()), 1) if stalls else None,
        stall_limit_s=interval + 10,
        arrived=len(stalls),
        written=len(written),
        schemas_equal=equal,
    )
    for migration in RELEASE:
        waited = stalls.get(migration.what)
        state = "carried" if migration in carried else "NOT carried"
        if migration.what in written:
            state += f", its write arrived after {waited:.1f} s" if waited is not None else ", its write NEVER arrived"
        lines.append(f"  {migration.what}: {state}")
    lines.append(
        "schemas of the tables in scope equal on both sides"
        if equal
        else "schemas still differ: " + "; ".join([*found.other, *found.missing])
    )
    return lines


def rehearse_ddl() -> int:
    """The migration with the application shipping a release during the replication window (``make
    rehearsal-ddl``): after ferry_week_prior, :func:`ship_release`; then the day before and D-day. Every change
    must be carried, every write arrive within the watch's interval plus 10 s, the schemas be equal, and no row be
    lost."""
    folder = rehearsal_folder("-ddl")
    print(f"DDL rehearsal with plan {os.environ['FERRY_PLAN']}; logs and reports in {folder}")
    figures: dict = {}
    result = migrate(folder, after_week_prior=lambda: ship_release(figures))
    lines, ok = summary(result, folder)
    print("\n".join(lines))
    stall, lost_rows = figures.get("longest_apply_stall_s"), result["rows_lost"]
    ddl_ok = (
        ok
        and figures.get("carried") == len(RELEASE)
        and figures.get("arrived") == figures.get("written")
        and figures.get("schemas_equal")
        and stall is not None
        and stall <= figures["stall_limit_s"]
    )
    print(
        f"ddl_changes={figures.get('ddl_changes', len(RELEASE))} carried={figures.get('carried', 0)} "
        f"longest_apply_stall_s={stall} lost_rows={lost_rows} ok={'yes' if ddl_ok else 'no'}"
    )
    return 0 if ddl_ok else 1


def received_ids(stand, app: str = "new_app") -> set[str]:
    import base64

    path = stand.dir / "apps" / f"{app}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {json.loads(base64.b64decode(json.loads(line)["body_b64"])).get("id") for line in lines}


def plan_and_sides():
    """The stand's plan and a hook on each of its two databases."""
    from ferry.hooks.replication import ReplicationHook
    from ferry.plan import load_plan

    plan = load_plan()
    return (
        plan,
        ReplicationHook(plan.source.conn_id, plan.source.database),
        ReplicationHook(plan.target.conn_id, plan.target.database),
    )


def users_line(report: dict | None) -> str:
    """The D-day report's users' view in one line."""
    users = (report or {}).get("users") or {}
    if users.get("switch") == "pooler":
        return f"switch at the pooler: the old app's queries waited {users.get('pause_s')} s, then went to the target"
    if users.get("switch") == "stop":
        return (
            f"old app stopped: down {users.get('downtime_s')} s (its stop to the DNS switch) plus up to the "
            f"{users.get('plus_dns_ttl_s')} s TTL"
        )
    return "users' view: not in the report"


def reverse_caught_up(timeout_s: float = 120) -> None:
    """Once the cutover set up the reverse replication: wait until the old source has every write the target took
    (the write load wrote there through the pooler), so the comparison sees both sides at rest."""
    from ferry.guards import reverse_link, wait_confirmed

    plan, source, target = plan_and_sides()
    if source.get_subscription_status(plan.reverse_subscription) is None:
        return
    slot, waited = wait_confirmed(reverse_link(plan, source, target), target.get_current_lsn(), timeout_s)
    print(f"  reverse replication: {'caught up' if slot and slot['caught_up'] else 'NOT caught up'} in {waited:.1f} s")


def lost_rows() -> dict[str, int]:
    """Per table, the rows the source holds that the target lacks or holds otherwise, and the large objects
    it lacks or holds otherwise (after cutover: 0)."""
    from ferry.compare import Comparer
    from ferry.plan import in_scope

    plan, source, target = plan_and_sides()
    comparer = Comparer(source, target, concurrency=plan.thresholds.compare_concurrency)
    lost = {}
    on_target = {t["qualified"] for t in target.get_tables(plan.replication.schemas)}
    for table in in_scope(plan, source.get_tables(plan.replication.schemas)):
        if table["qualified"] not in on_target:  # never reached the target (a stage failed before its scope step)
            lost[table["qualified"]] = source.count_rows(table["qualified"])
            continue
        result = comparer.compare_table(table["qualified"], "full")
        keyless = sum(max(0, d["source"] - d["target"]) for d in result.differing_rows)
        lost[table["qualified"]] = len(result.missing_on_target) + len(result.changed) + keyless
    source_objects, target_objects = source.large_object_digests(), target.large_object_digests()
    lost["large objects"] = sum(
        target_objects.get(oid, {}).get("md5") != lo["md5"] for oid, lo in source_objects.items()
    )
    return lost


def migration_state() -> list[str]:
    """Rows per table on both sides and the subscription's state, read from the stand."""
    from ferry.plan import in_scope

    plan, source, target = plan_and_sides()
    lines = []
    target_tables = {t["qualified"] for t in target.get_tables(plan.replication.schemas)}
    for table in in_scope(plan, source.get_tables(plan.replication.schemas)):
        name = table["qualified"]
        copied = f"{target.count_rows(name):>9,}" if name in target_tables else f"{'-':>9}"
        lines.append(f"{name:<24} source {source.count_rows(name):>9,}  target {copied}")
    objects = (source.large_object_digests(), target.large_object_digests())
    same = sum(objects[1].get(oid, {}).get("md5") == lo["md5"] for oid, lo in objects[0].items())
    lines.append(f"large objects: source {len(objects[0])}, target {len(objects[1])}, identical {same}")
    views = {v["view"]: v["populated"] for v in target.get_materialized_views(plan.replication.schemas)}
    lines.append(
        "materialized views on the target: " + (", ".join(f"{v} populated={p}" for v, p in views.items()) or "none")
    )
    status = target.get_subscription_status(plan.subscription)
    lines.append(
        f"subscription {plan.subscription}: "
        + (
            "none (dropped at cutover)"
            if status is None
            else f"enabled={status['enabled']}, worker running={status['worker_pid'] is not None}"
        )
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
