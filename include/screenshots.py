"""``make screenshots``: the pictures the docs show, taken from a migration on the stand's deployment.

Debian's headless chromium logs in to the deployment's UI as a person does, and the stages run as in the rehearsal
(the gates answered through the REST API, as the UI's form does). It writes, in the folder given (``docs/img``):

- ``ferry-page-week-prior.png``: the Ferry page inside the UI, once week prior is done (the replication running);
- ``grid-week-prior.png``: ferry_week_prior's grid;
- ``gate-form.png``: D-day's last gate, its form open, waiting for an answer;
- ``ferry-page-d-day.png``: the Ferry page at that moment (the gate waiting, the reverse replication running);
- ``d-day-report.png``: the D-day report's timeline chart (write_report's own PNG).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from deployment import Deployment

WINDOW = "1440,1000"


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    if not driver_path:
        raise SystemExit("chromedriver is missing: make apt installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(15)
    return driver


def log_in(driver, deployment: Deployment) -> None:
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    password = json.loads((deployment.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    driver.get(deployment.url + "/")
    WebDriverWait(driver, 60).until(lambda d: "/auth/login" in d.current_url)
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 60).until(lambda d: "/auth/login" not in d.current_url)


def shoot(driver, url: str, path: Path, wait_for: str | None = None, settle_s: float = 3) -> None:
    """Open ``url``, wait for the XPath ``wait_for`` (if any) and for the page to settle, save a PNG."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    if wait_for:
        driver.find_element(By.XPATH, wait_for)
    time.sleep(settle_s)  # the UI's charts and lists render after their data arrives
    driver.save_screenshot(str(path))
    print(f"  wrote {path}", flush=True)


def main(folder: Path) -> int:
    from selenium.webdriver.common.by import By

    folder.mkdir(parents=True, exist_ok=True)
    home = Path(os.environ.get("AIRFLOW_HOME", ".airflow")) / "screenshots"
    shutil.rmtree(home, ignore_errors=True)
    logs = home / "logs"
    os.environ["FERRY_REPORT_DIR"] = str(home / "reports")  # the deployment's tasks write the D-day report there
    with Deployment(home=home / "home", log_dir=logs) as deployment:
        driver = browser()
        try:
            log_in(driver, deployment)
            for dag_id in ("ferry_preflight", "ferry_week_prior"):
                state, _ = deployment.run_stage(dag_id, 1800, logs / f"{dag_id}.log")
                print(f"  {dag_id}: {state}", flush=True)
                if state != "success":
                    return 1
            shoot(driver, deployment.url + "/plugin/ferry", folder / "ferry-page-week-prior.png", "//iframe")
            shoot(driver, deployment.url + "/dags/ferry_week_prior", folder / "grid-week-prior.png", "//h2")
            state, _ = deployment.run_stage("ferry_day_before", 1800, logs / "ferry_day_before.log")
            print(f"  ferry_day_before: {state}", flush=True)
            if state != "success":
                return 1
            run_id = deployment.trigger("ferry_d_day")
            deployment.answer_gate(deployment.waiting_gate("ferry_d_day", run_id, "gate_go_no_go", 1800))
            last = deployment.waiting_gate("ferry_d_day", run_id, "gate_point_of_no_return", 1800)
            shoot(driver, deployment.url + "/plugin/ferry", folder / "ferry-page-d-day.png", "//iframe")
            gate = f"{deployment.url}/dags/ferry_d_day/runs/{run_id}/tasks/gate_point_of_no_return/required_actions"
            shoot(driver, gate, folder / "gate-form.png", "//button[normalize-space()='Approve']")
            driver.find_element(By.XPATH, "//button[normalize-space()='Approve']")  # what the operator clicks
            deployment.answer_gate(last)
            state = deployment.wait("ferry_d_day", run_id, 600)
            print(f"  ferry_d_day: {state}", flush=True)
            deployment.save_logs("ferry_d_day", run_id, logs / "ferry_d_day.log")
            reports = sorted(Path(os.environ["FERRY_REPORT_DIR"], "d_day").glob("d_day__*.png"))
            if not reports:
                print("  no D-day report chart was written", flush=True)
                return 1
            shutil.copyfile(reports[-1], folder / "d-day-report.png")
            print(f"  wrote {folder / 'd-day-report.png'} (from {reports[-1]})", flush=True)
            return 0 if state == "success" else 1
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")))
