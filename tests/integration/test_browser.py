"""`make airflow` as a person uses it: Debian's chromium (headless, on loopback) logs in to the
Airflow UI, triggers ferry_preflight from its Trigger form, and sees the run succeed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PORT = 18280
URL = f"http://127.0.0.1:{PORT}"


@pytest.fixture
def airflow_ui(stand, tmp_path):
    """``include/airflow_standalone.py`` (what ``make airflow`` runs) with the test stand's connections."""
    home = tmp_path / "airflow"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "PYTEST"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(PORT),
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{URL}/execution/",
        PYTHONPATH=f"{ROOT / 'plugins'}:{ROOT / 'include'}",
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    log = (tmp_path / "standalone.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "include" / "airflow_standalone.py")],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while True:
            assert proc.poll() is None, (tmp_path / "standalone.log").read_text()[-3000:]
            try:
                if httpx.get(URL + "/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        passwords = home / "simple_auth_manager_passwords.json.generated"
        while not passwords.exists():
            time.sleep(0.5)
        yield json.loads(passwords.read_text())["admin"]
    finally:
        proc.send_signal(signal.SIGINT)  # the wrapper stops airflow standalone cleanly on SIGINT
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


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


def test_log_in_trigger_ferry_preflight_and_see_it_succeed(airflow_ui, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(URL + "/")
    WebDriverWait(browser, 60).until(lambda d: "/auth/login" in d.current_url)  # not logged in: the login page
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(airflow_ui)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(lambda d: "/auth/login" not in d.current_url)

    browser.get(URL + "/dags/ferry_preflight")
    browser.find_element(By.XPATH, "//button[normalize-space()='Trigger']").click()  # opens the Trigger form
    unpause = browser.find_element(By.XPATH, "//*[contains(normalize-space(), 'Unpause ferry_preflight on trigger')]")
    assert unpause.is_displayed()
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
    token = httpx.post(URL + "/auth/token", json={"username": "admin", "password": airflow_ui}).json()["access_token"]
    run = httpx.get(
        f"{URL}/api/v2/dags/ferry_preflight/dagRuns/{run_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert run["state"] == "success" and run["triggered_by"] == "ui"
