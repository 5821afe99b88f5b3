"""Ferry on a real Airflow deployment (``include/deployment.py``): api-server, scheduler, dag-processor,
triggerer and two Celery workers on the stand's Redis, metadata on the stand's own PostgreSQL cluster.
Runs are triggered and watched through the REST API, as an operator does."""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from deployment import Deployment
from ferry.ledger import Action, Ledger
from ferry.plan import load_plan
from stand.services.postgres import AirflowMetadata
from tests.integration.conftest import as_ferry

STAGES = (
    "ferry_week_prior",
    "ferry_day_before",
    "ferry_d_day",
    "ferry_rollback",
    "ferry_rollback_after_cutover",
    "ferry_decommission",
)

SPREAD_TABLES = [f"spread.t{i}" for i in range(8)]
SPREAD = "ferry_test_compare_spread"
DRILL = "ferry_test_replication_drill"  # the replication operators as D-day chains them, with retries


@pytest.fixture(scope="module")
def deployment(stand, tmp_path_factory):
    folder = tmp_path_factory.mktemp("deployment")
    # One task at a time per worker: the scheduler's queue then has to reach both.
    with Deployment(
        home=folder / "home", log_dir=folder / "logs", port_base=stand.port_base, workers=2, worker_concurrency=1
    ) as running:
        yield running


@pytest.fixture
def spread_tables(source, target):
    for side, conn in (("source", source), ("target", target)):
        with as_ferry(conn, side):
            conn.execute("CREATE SCHEMA spread")
            for table in SPREAD_TABLES:
                conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, v text)")
                conn.execute(f"INSERT INTO {table} SELECT i, md5(i::text) FROM generate_series(1, 50000) i")
    yield SPREAD_TABLES
    for conn in (source, target):
        conn.execute("DROP SCHEMA spread CASCADE")


def test_the_per_table_comparison_spreads_over_both_celery_workers(deployment, spread_tables, source):
    """While one worker is busy with a table's comparison (held mid-query by a lock), the other takes the rest:
    the mapped comparisons spread over both. (Unheld, a comparison of 50,000 rows ends in a fraction of a second,
    and one worker can drain the queue alone before the other polls.)"""
    with held_mid_comparison(deployment, source, spread_tables) as (run_id, held):
        wait_for(
            deployment,
            run_id,
            lambda ti: (
                ti["task_id"] == "compare_data" and ti["state"] == "success" and ti["hostname"] != held["hostname"]
            ),
            "a comparison done by the other worker while the first is held",
        )
    state = deployment.wait(SPREAD, run_id, 600)
    assert state == "success", deployment.describe(SPREAD, run_id, "the run failed")
    compared = [ti for ti in deployment.task_instances(SPREAD, run_id) if ti["task_id"] == "compare_data"]
    assert len(compared) == len(spread_tables) and all(ti["state"] == "success" for ti in compared)
    by_worker: dict[str, int] = {}
    for ti in compared:
        by_worker[ti["hostname"]] = by_worker.get(ti["hostname"], 0) + 1
    assert set(by_worker) == {"worker1", "worker2"}, by_worker


@contextmanager
def locked(source, table: str):
    """``table`` locked on the source by an open transaction: a comparison of it waits until the block ends."""
    with psycopg.connect(source.info.dsn) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def wait_for(deployment, run_id: str, check, what: str, timeout_s: float = 300, dag_id=SPREAD):
    """The first task instance of the run for which ``check`` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [ti for ti in deployment.task_instances(dag_id, run_id) if check(ti)]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(deployment.describe(dag_id, run_id, f"never saw {what}"))


def task_is(task_id: str, *states: str):
    return lambda ti: ti["task_id"] == task_id and ti["state"] in states


@contextmanager
def held_mid_comparison(deployment, source, tables: list[str]):
    """A spread run over ``tables`` whose first comparison is running and held mid-query (its table locked on
    the source) for the block; yields the run id and that task instance. The lock ends with the block."""
    with locked(source, tables[0]):
        run_id = deployment.trigger(SPREAD, {"tables": tables})
        held = wait_for(
            deployment,
            run_id,
            lambda ti: ti["task_id"] == "compare_data" and ti["map_index"] == 0 and ti["state"] == "running",
            "compare_data[0] running",
        )
        yield run_id, held


def test_a_worker_killed_while_compare_data_runs_the_task_runs_again_and_succeeds(deployment, spread_tables, source):
    """SIGKILL on the worker running a table's comparison (held mid-query by a lock): the scheduler sees the
    task's heartbeat stop, retries it, and it succeeds; the run completes."""
    tables = spread_tables[:3]
    with held_mid_comparison(deployment, source, tables) as (run_id, held):
        worker = held["hostname"]
        deployment.kill(worker)
    deployment.start_component(worker)
    assert deployment.wait(SPREAD, run_id, 600) == "success", deployment.describe(
        SPREAD, run_id, "the run did not succeed"
    )
    again = wait_for(deployment, run_id, lambda ti: ti["task_id"] == "compare_data" and ti["map_index"] == 0, "it")
    assert again["state"] == "success" and again["try_number"] >= 2, again


def test_the_scheduler_killed_mid_run_and_started_again_the_run_completes(deployment, spread_tables, source):
    tables = spread_tables[:3]
    with held_mid_comparison(deployment, source, tables) as (run_id, _):
        deployment.kill("scheduler")
    deployment.start_component("scheduler")
    assert deployment.wait(SPREAD, run_id, 600) == "success", deployment.describe(
        SPREAD, run_id, "the run did not succeed"
    )


def test_the_metadata_database_restarted_mid_stage_the_run_completes_or_is_cleared_and_rerun(
    deployment, spread_tables, source, stand
):
    """Airflow's metadata database stops (as a crash would) and starts again while a run is in flight. The
    run completes; or, if a task failed while the database was away, it failed with its reason in the
    log, and clearing the failed tasks (as an operator does in the UI) re-runs them to success."""
    tables = spread_tables[:3]
    with held_mid_comparison(deployment, source, tables) as (run_id, _):
        AirflowMetadata().restart(stand)
    state = deployment.wait(SPREAD, run_id, 600)
    if state != "success":
        failed = [ti for ti in deployment.task_instances(SPREAD, run_id) if ti["state"] == "failed"]
        assert failed, deployment.describe(SPREAD, run_id, f"the run ended {state}")
        deployment.api(
            "POST",
            "/dags/ferry_test_compare_spread/clearTaskInstances",
            json={"dag_run_id": run_id, "only_failed": True, "dry_run": False, "reset_dag_runs": True},
        )
        state = deployment.wait(SPREAD, run_id, 600)
    assert state == "success", deployment.describe(SPREAD, run_id, "not even after a clear")


def test_a_worker_killed_while_the_fence_runs_the_fence_is_made_once_and_the_run_completes(
    deployment, source, clean_replication
):
    """SIGKILL on the worker running fence_source_and_catch_up while its transaction waits for a lock (an application
    session holds customers): the fence's transaction dies with it (nothing fenced), the task runs again
    on a worker and fences; the run completes, the source holds one fence per table, and the ledger one
    completed fence (the killed try left only its intent) and no change completed twice."""
    plan = load_plan()
    with psycopg.connect(source.info.dsn) as app:  # a writer's lock, taken without a transaction id
        app.execute("LOCK TABLE public.customers IN ROW EXCLUSIVE MODE")
        run_id = deployment.trigger(DRILL)
        fencing = wait_for(
            deployment, run_id, task_is("fence_source_and_catch_up", "running"), "the fence running", 600, DRILL
        )
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%trigger%'"
        deadline = time.monotonic() + 60
        while not source.execute(waiting).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert source.execute(waiting).fetchone()[0], deployment.describe(DRILL, run_id, "the fence never waited")
        deployment.kill(fencing["hostname"])
        app.rollback()
    deployment.start_component(fencing["hostname"])
    assert deployment.wait(DRILL, run_id, 900) == "success", deployment.describe(DRILL, run_id, "it did not succeed")
    again = wait_for(deployment, run_id, task_is("fence_source_and_catch_up", "success"), "the fence", 10, DRILL)
    assert again["try_number"] >= 2, again
    fences = [r for r in Ledger(plan).records(action=Action.FENCE_SOURCE) if r.run_id == run_id]
    assert [r.done for r in fences] == [False] * (len(fences) - 1) + [True], fences
    assert fences[-1].try_number == again["try_number"] and fences[0].try_number == fencing["try_number"]
    completed = Counter((r.action, r.target) for r in Ledger(plan).records() if r.run_id == run_id and r.done)
    assert [change for change, n in completed.items() if n > 1] == [], completed
    triggers = source.execute(
        "SELECT tgrelid::regclass::text, count(*) FROM pg_trigger WHERE tgname LIKE 'ferry%' GROUP BY 1"
    ).fetchall()
    assert triggers and all(n == 1 for _, n in triggers), triggers


def test_the_triggerer_killed_while_the_catch_up_wait_is_deferred_the_wait_resumes_and_completes(
    deployment, source, target, clean_replication
):
    """The target's apply is held (a session locks customers against writes) with a row still to apply,
    so fence_source_and_catch_up's wait defers to the triggerer; the triggerer is SIGKILLed and started again,
    the lock ends: the wait resumes in the new triggerer, the row arrives, and the run completes."""
    run_id = deployment.trigger(DRILL)
    wait_for(deployment, run_id, task_is("start_change_capture", "success"), "the capture started", 600, DRILL)
    with psycopg.connect(target.info.dsn) as reader:
        reader.execute("LOCK TABLE public.customers IN SHARE MODE")  # reads go on; the apply waits
        added = source.execute(
            "INSERT INTO customers (email, name, country) VALUES ('drill@example.com', 'Drill', 'DE') RETURNING id"
        ).fetchone()[0]
        wait_for(deployment, run_id, task_is("fence_source_and_catch_up", "deferred"), "the wait deferred", 600, DRILL)
        deployment.kill("triggerer")
        time.sleep(2)
        deployment.start_component("triggerer")
        reader.rollback()
    assert deployment.wait(DRILL, run_id, 900) == "success", deployment.describe(DRILL, run_id, "it did not succeed")
    waited = wait_for(deployment, run_id, task_is("fence_source_and_catch_up", "success"), "the wait", 10, DRILL)
    assert "Caught up: the target confirmed" in deployment.task_log(waited)
    assert target.execute("SELECT count(*) FROM customers WHERE id = %s", (added,)).fetchone() == (1,)


def test_the_preflight_is_scheduled_from_the_start_and_the_stages_wait_to_be_triggered(deployment):
    """Nobody unpauses anything: the hourly pre-flight is active and its scheduled run comes; the stages
    stay paused until an operator triggers them."""
    for dag_id in ("ferry_preflight", *STAGES):
        deployment.wait_for_dag(dag_id, time.monotonic() + 180)
    assert deployment.api("GET", "/dags/ferry_preflight")["is_paused"] is False
    assert all(deployment.api("GET", f"/dags/{dag_id}")["is_paused"] is True for dag_id in STAGES)
    deadline, scheduled = time.monotonic() + 180, []
    while not scheduled and time.monotonic() < deadline:
        runs = deployment.api("GET", "/dags/ferry_preflight/dagRuns", params={"limit": 100})["dag_runs"]
        scheduled = [r for r in runs if r["run_type"] == "scheduled"]
        time.sleep(2)
    assert scheduled, "no scheduled run of ferry_preflight within 180 s of the deployment's start"


def test_a_failed_preflight_is_posted_to_the_plans_notification_webhook(deployment, stand, source, stand_secrets):
    """A table that cannot be replicated fails the pre-flight; its failure reaches the plan's
    ``preflight.notify_conn_id`` (the stand's alerts app), naming the run, with no secret in it."""
    alerts = stand.dir / "apps" / "alerts.jsonl"
    source.execute("CREATE TABLE public.ferry_test_no_identity (v text)")
    try:
        state, run_id = deployment.run_stage("ferry_preflight", 600, deployment.log_dir / "preflight-failing.log")
    finally:
        source.execute("DROP TABLE public.ferry_test_no_identity")
    assert state == "failed", deployment.describe("ferry_preflight", run_id, "the run should have failed")
    deadline, posted = time.monotonic() + 180, []
    while not posted and time.monotonic() < deadline:
        lines = alerts.read_text().splitlines() if alerts.exists() else []
        posted = [
            json.loads(line) for line in lines if run_id in base64.b64decode(json.loads(line)["body_b64"]).decode()
        ]
        time.sleep(2)
    assert posted, f"the failure of {run_id} was not posted to the alerts app within 180 s"
    assert posted[0]["path"] == "/alerts/ferry"
    message = base64.b64decode(posted[0]["body_b64"]).decode()
    body = json.loads(message)
    assert body["dag_id"] == "ferry_preflight" and body["run_id"] == run_id and body["event"] == "ferry_run_failed"
    assert not [s for s in stand_secrets if s in message]


def test_a_stage_made_to_fail_is_accounted_for_by_the_rehearsal(deployment, source, tmp_path):
    """The rehearsal's account when a stage fails (here the pre-flight, made to fail by a table in scope without
    replica identity, which the target also lacks): it names the stage, the failed task and the error it raised,
    compares what it can (the table the target lacks is counted, not a crash) and ends FAILED at that stage."""
    from rehearsal import run_stage, summary

    (tmp_path / "reports").mkdir()
    with as_ferry(source, "source"):  # owned by Ferry's login, as the application's tables are on a managed service
        source.execute("CREATE TABLE public.ferry_test_no_identity (v text)")
        source.execute("INSERT INTO public.ferry_test_no_identity SELECT 'row ' || i FROM generate_series(1, 3) i")
    try:
        run = run_stage(deployment, "ferry_preflight", tmp_path)
        assert not run.passed and run.log.exists()
        failed = [f for f in run.failures if f.startswith("check_replica_identity: AirflowFailException: ")]
        assert failed and "ferry_test_no_identity" in failed[0], run.failures
        assert "  ! AirflowFailException: " in run.log.read_text()  # the saved log keeps the error itself
        result = {
            "ok": False,
            "runs": [run],
            "timings": {run.dag_id: run.seconds},
            "states": {run.dag_id: "failed"},
            "load": {},
            "acked": [],
            "delivered": set(),
            "lost_webhooks": [],
            "d_day_report": None,
        }
        lines, ok = summary(result, tmp_path)
    finally:
        source.execute("DROP TABLE public.ferry_test_no_identity")
    said = "\n".join(lines)
    assert not ok
    assert "could not be read" not in said and "not compared" not in said, said
    assert f"ferry_preflight did not succeed (log: {run.log}):" in said
    assert failed[0] in said
    assert "public.ferry_test_no_identity: 3" in said, said  # compared: the target never got it
    assert f"Rehearsal FAILED at ferry_preflight: {run.failures[0]}" in said


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which("chromedriver"), "chromium-driver is missing: make apt installs it"
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(15)
    yield driver
    driver.quit()


def log_in(browser, deployment) -> str:
    """Log in to the deployment's UI as a person does (its login page); returns the admin's password."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    password = json.loads((deployment.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    browser.get(deployment.url + "/")
    WebDriverWait(browser, 60).until(lambda d: "/auth/login" in d.current_url)  # not logged in: the login page
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(lambda d: "/auth/login" not in d.current_url)
    return password


def test_log_in_trigger_ferry_preflight_and_see_it_succeed(deployment, browser, tmp_path):
    """``make airflow`` as a person uses it: Debian's chromium (headless, on loopback) logs in to the
    deployment's UI, triggers ferry_preflight from its Trigger form, and sees the run succeed."""
    url = deployment.url
    password = log_in(browser, deployment)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/dags/ferry_preflight")
    browser.find_element(By.XPATH, "//button[normalize-space()='Trigger']").click()  # opens the Trigger form
    browser.find_element(By.XPATH, "(//button[normalize-space()='Trigger'])[last()]").click()  # the form's button
    WebDriverWait(browser, 60).until(lambda d: "/dags/ferry_preflight/runs/manual__" in d.current_url)
    run_url = browser.current_url
    run_id = run_url.rsplit("/", 1)[1]

    # The run's state badge, beside its heading, as the page shows it (reloaded as a person would).
    badge = f"//div[h2][contains(., '{run_id}')]/span[@data-testid='state-badge']"
    state, deadline = None, time.monotonic() + 900  # a hang must end the test, not the CI run
    while state not in ("Success", "Failed") and time.monotonic() < deadline:
        time.sleep(3)
        browser.get(run_url)
        state = browser.find_element(By.XPATH, badge).text.strip()
    browser.save_screenshot(str(tmp_path / "run.png"))
    assert state == "Success", f"ferry_preflight's run ended {state}; screenshot {tmp_path / 'run.png'}"
    token = httpx.post(url + "/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
    run = httpx.get(
        f"{url}/api/v2/dags/ferry_preflight/dagRuns/{run_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert run["state"] == "success" and run["triggered_by"] == "ui"


def ferry_page(browser, deployment, shot: Path | None = None) -> dict[str, str]:
    """The Ferry page as the browser shows it: each section's text, by its id."""
    from selenium.webdriver.common.by import By

    browser.get(deployment.url + "/ferry/")
    sections = {s.get_attribute("id"): s.text for s in browser.find_elements(By.TAG_NAME, "section")}
    if shot is not None:
        browser.save_screenshot(str(shot))
    return sections


def test_the_ferry_page_shows_the_migration_during_week_prior_and_after_d_day(
    deployment, browser, stand, source, target, after_week_prior, stand_secrets, tmp_path
):
    """The Ferry page in the UI (plugins/ferry_ui_plugin.py), read by Debian's chromium through the UI's login, at two
    moments of a migration on the deployment: in the week before D-day (while week prior runs, then once it is done),
    and at the end of D-day (the DNS switched, the last gate waiting), then once D-day completed. It needs the UI's
    login."""
    import re

    from selenium.webdriver.common.by import By

    from tests.integration.test_stages import give_the_stand_back

    url = deployment.url
    anonymous = httpx.get(url + "/ferry/state.json")
    assert anonymous.status_code == 401 and "log in to Airflow" in anonymous.text
    log_in(browser, deployment)
    views = [v for p in deployment.api("GET", "/plugins")["plugins"] for v in p.get("external_views", [])]
    assert any(v["href"] == "ferry/" and v["url_route"] == "ferry" and v["destination"] == "nav" for v in views), views
    browser.get(url + "/plugin/ferry")  # the page inside the UI, from its navigation
    frame = browser.find_element(By.TAG_NAME, "iframe")
    assert frame.get_attribute("src").rstrip("/").endswith("/ferry"), frame.get_attribute("src")
    try:
        state, _ = deployment.run_stage("ferry_preflight", 900, tmp_path / "ferry_preflight.log")
        assert state == "success"
        # While week prior runs (its pre-flight, the schema, the subscription, the initial copy: tens of seconds).
        run_id = deployment.trigger("ferry_week_prior")
        deadline = time.monotonic() + 120
        while deployment.api("GET", f"/dags/ferry_week_prior/dagRuns/{run_id}")["state"] == "queued":
            assert time.monotonic() < deadline, "week prior never started"
            time.sleep(0.5)
        running = ferry_page(browser, deployment, tmp_path / "week-prior-running.png")
        assert "Ferry 2 · Week prior running" in running["stages"], running["stages"]
        assert running["next"].startswith("Next step\nFerry 2 · Week prior is running: watch its grid"), running
        assert deployment.wait("ferry_week_prior", run_id, 900) == "success"

        week = ferry_page(browser, deployment, tmp_path / "week-prior.png")
        assert re.search(r"Ferry 1 · Pre-flight done", week["stages"]), week["stages"]
        assert re.search(r"Ferry 2 · Week prior done", week["stages"]), week["stages"]
        assert re.search(r"Ferry 5 · D-day not started", week["stages"]), week["stages"]
        assert week["preflight"].startswith("Last pre-flight\npassed"), week["preflight"]
        assert re.search(r"forward \S+ running 0 apply, 0 sync", week["replication"]), week["replication"]
        copied = re.search(r"(\d+) of (\d+) tables ready", week["copy"])
        assert copied and copied.group(1) == copied.group(2) != "0", week["copy"]
        assert week["next"] == "Next step\nTrigger Ferry 4 · Day before (ferry_day_before).", week["next"]

        state, _ = deployment.run_stage("ferry_day_before", 900, tmp_path / "day_before.log")
        assert state == "success"
        run_id = deployment.trigger("ferry_d_day")
        deployment.answer_gate(deployment.waiting_gate("ferry_d_day", run_id, "gate_go_no_go"))
        last = deployment.waiting_gate("ferry_d_day", run_id, "gate_point_of_no_return")
        after = ferry_page(browser, deployment, tmp_path / "d-day-gate.png")
        assert "ferry_d_day · gate_point_of_no_return" in after["gates"], after
        assert after["next"] == (
            "Next step\nAnswer the gate gate_point_of_no_return of ferry_d_day (Required Actions): it waits for a "
            "person."
        )
        assert "Ferry 5 · D-day running" in after["stages"], after["stages"]
        assert re.search(r"reverse \S+ running 0 apply, 0 sync", after["replication"]), after["replication"]
        assert "forward" not in after["replication"]  # the forward subscription was dropped at the cutover
        link = browser.find_element(By.CSS_SELECTOR, "#gates a")
        assert link.get_attribute("href").endswith(
            f"/dags/ferry_d_day/runs/{run_id}/tasks/gate_point_of_no_return/required_actions"
        )
        link.click()  # the gate's form, in the UI
        assert browser.find_element(By.XPATH, "//button[normalize-space()='Approve']")

        deployment.answer_gate(last)
        assert deployment.wait("ferry_d_day", run_id, 300) == "success"
        done = ferry_page(browser, deployment, tmp_path / "after-d-day.png")
        assert "Ferry 5 · D-day done" in done["stages"] and "gates" not in done, done
        assert done["next"].startswith("Next step\nThe new side serves. Soak:"), done["next"]
        page_text = "".join(done.values())
        assert not [secret for secret in stand_secrets if secret in page_text]
    finally:
        give_the_stand_back(stand)
