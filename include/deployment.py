"""Airflow as Ferry's users run it, on the stand: every component its own process, driven by its REST API.

The api-server, the scheduler, the dag-processor, the triggerer and (Celery executor, the default) two
Celery workers on the stand's Redis; the metadata database is the stand's own PostgreSQL cluster for
Airflow (never the source or the target). ``executor="local"`` runs the LocalExecutor instead (the
scheduler runs the tasks; no workers, no broker).

A stage runs the way an operator runs it in the UI: the DAG unpaused, a run triggered, each human gate
answered through the hitlDetails endpoint (``GateAnswerer``), the run watched until it ends. Every wait
has a deadline; past it, :class:`StageTimeout` says what is still running or waiting, with the last lines
of each such task's log. Nothing here waits for ever. A component that exits while a run is watched is
started again, as Kubernetes or systemd would (at most ``MAX_RESTARTS`` times each).

Used by ``make rehearsal``, ``make rehearsal-rollback``, ``make bench-cutover`` and ``make airflow``
(``python include/deployment.py``), and by the deployment tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
EXECUTORS = {"celery": "CeleryExecutor", "local": "LocalExecutor"}
MAX_RESTARTS = 5  # of one component, over a deployment's life
DONE = {"success", "failed"}
# The api-server's port beside the stand's own (its base + offset). The components run no log servers (they
# would listen on every interface): all share one machine and AIRFLOW_HOME, and the api-server reads task logs
# from its files.
API_OFFSET = 14


class DeploymentError(RuntimeError):
    """The deployment could not start, or a component died."""


class StageTimeout(RuntimeError):
    """A stage passed its deadline; the message says what was still running or waiting."""


def worker_hostname() -> str:
    """Airflow's ``[core] hostname_callable`` for the stand's workers: each worker's own name (all run on
    one machine, so the machine's name would not tell them apart in a task instance's ``hostname``)."""
    import socket

    return os.environ.get("FERRY_WORKER_NAME") or socket.getfqdn()


ERROR_PREFIX = "  ! "


def _log_line(entry: Any) -> str:
    """One structured task log entry as text; an entry carrying an exception gets a line per exception after it
    (``  ! Type: message``), which the API's ``event`` alone leaves out."""
    if not isinstance(entry, dict):
        return str(entry)
    text = entry.get("event", "")
    for error in entry.get("error_detail") or []:
        if isinstance(error, dict) and error.get("exc_type"):
            text += f"\n{ERROR_PREFIX}{error['exc_type']}: {error.get('exc_value', '')}"
    return text


@dataclass
class Deployment:
    """The stand's Airflow deployment. ``home`` is its AIRFLOW_HOME (logs, the generated admin password)."""

    home: Path
    log_dir: Path
    port_base: int = field(default_factory=lambda: int(os.environ.get("FERRY_STAND_PORT_BASE", "24320")))
    executor: str = field(default_factory=lambda: os.environ.get("EXECUTOR", "celery"))
    workers: int = 2
    worker_concurrency: int = 4
    # The UI's port: FERRY_AIRFLOW_PORT (make airflow sets 8080), else the stand's port base + 14.
    api_port: int | None = field(default_factory=lambda: int(os.environ.get("FERRY_AIRFLOW_PORT") or 0) or None)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    client: httpx.Client | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise DeploymentError(
                f"EXECUTOR={self.executor!r} is not one of {sorted(EXECUTORS)}: set EXECUTOR=celery or local"
            )
        self.api_port = self.api_port or self.port_base + API_OFFSET
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # The processes ---------------------------------------------------------------------------------

    @property
    def components(self) -> list[str]:
        names = ["api-server", "scheduler", "dag-processor", "triggerer"]
        return names + [f"worker{i}" for i in range(1, self.workers + 1)] if self.executor == "celery" else names

    def env(self) -> dict[str, str]:
        """The environment every component shares: the stand's connections, and the deployment's config."""
        for needed in ("FERRY_AIRFLOW_DB", "FERRY_CELERY_BROKER"):
            if needed not in os.environ:
                raise DeploymentError(f"{needed} is not set: load the stand's env (set -a; . <stand>/stand.env)")
        db = os.environ["FERRY_AIRFLOW_DB"]
        secret = _secret(db)
        return os.environ | {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.executor],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "deployment.worker_hostname",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__CELERY__BROKER_URL": os.environ["FERRY_CELERY_BROKER"],
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db.replace("postgresql+psycopg2://", "postgresql://"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "deployment_celery.CONFIG",
            # An idle scheduler looks again after this long (1 s by default): every task of the write freeze
            # waits for it once, so the deployment looks more often.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": os.environ.get("FERRY_SCHEDULER_IDLE_SLEEP_S", "0.2"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            # A task whose worker died is failed (and retried) after this long without a heartbeat: 300 s by
            # default, shorter on the stand so that a crash drill does not wait five minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": os.environ.get("FERRY_HEARTBEAT_TIMEOUT_S", "30"),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT / 'include'}",
        }

    def _argv(self, name: str) -> tuple[list[str], dict[str, str]]:
        if name.startswith("worker"):
            argv = [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"]
            return argv, {"FERRY_WORKER_NAME": name}
        if name in ("scheduler", "triggerer"):
            return [AIRFLOW, name, "--skip-serve-logs"], {}
        return [AIRFLOW, name], {}

    def migrate(self) -> None:
        """Create or upgrade the metadata database's schema (safe to run again)."""
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / "db-migrate.log"
        with log.open("w") as out:
            done = subprocess.run(
                [AIRFLOW, "db", "migrate"], env=self.env(), stdout=out, stderr=subprocess.STDOUT, timeout=600
            )
        if done.returncode:
            raise DeploymentError(f"airflow db migrate failed; see {log}:\n{_tail(log, 15)}")

    def start(self, timeout_s: float = 240) -> Deployment:
        """Migrate, start every component, wait until the api-server answers and the scheduler and
        (Celery) every worker report in; log in as the admin user."""
        try:
            httpx.get(self.url + "/api/v2/monitor/health", timeout=2)
            raise DeploymentError(
                f"something already answers on 127.0.0.1:{self.api_port} (a deployment left by an interrupted run?); "
                f"stop it (ss -ltnp | grep {self.api_port} names its pid), then run this again"
            )
        except httpx.TransportError:
            pass
        self.migrate()
        try:
            for name in self.components:
                self.start_component(name)
            deadline = time.monotonic() + timeout_s
            while not self._healthy():
                self._check_alive()
                if time.monotonic() > deadline:
                    raise DeploymentError(
                        f"the deployment did not become healthy in {timeout_s:.0f} s; logs in {self.log_dir}"
                    )
                time.sleep(1)
            self.login()
            if self.executor == "celery":
                self.wait_for_workers(deadline)
        except BaseException:
            self.stop()  # nothing of a failed start is left running
            raise
        return self

    def start_component(self, name: str) -> None:
        argv, extra = self._argv(name)
        out = (self.log_dir / f"{name}.log").open("a")
        self.procs[name] = subprocess.Popen(
            argv, env=self.env() | extra, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a component and every process under it, as a crash of its machine or container would (a
        drill: SIGKILL leaves them no time to clean up). Its process group is not enough: Airflow starts each
        task's process in a group of its own, which would outlive its worker."""
        import psutil

        proc = self.procs[name]
        if proc.poll() is None:
            try:
                tree = psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            os.killpg(proc.pid, sig)
            for child in tree:
                try:
                    child.send_signal(sig)
                except psutil.NoSuchProcess:
                    pass
        proc.wait(timeout=60)

    def stop(self) -> None:
        """Stop every component this deployment started (by its own pids): SIGTERM, then SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # what is left of the group (a worker's forked children)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.client:
            self.client.close()

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = self.log_dir / f"{name}.log"
                raise DeploymentError(f"airflow {name} exited ({proc.returncode}); see {log}:\n{_tail(log, 15)}")

    def keep_running(self) -> None:
        """Start again a component that exited (as Kubernetes or systemd would, ``restart: always``), saying so;
        more than ``MAX_RESTARTS`` restarts of one component is a failure, with the end of its log."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                continue
            self.restarts[name] = self.restarts.get(name, 0) + 1
            log = self.log_dir / f"{name}.log"
            if self.restarts[name] > MAX_RESTARTS:
                raise DeploymentError(
                    f"airflow {name} exited {self.restarts[name]} times (last {proc.returncode}); see {log}:\n{_tail(log, 15)}"
                )
            print(f"    airflow {name} exited ({proc.returncode}): starting it again", flush=True)
            self.start_component(name)

    def _healthy(self) -> bool:
        try:
            health = httpx.get(self.url + "/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        wanted = ["metadatabase", "scheduler", "triggerer", "dag_processor"]
        return all((health.get(part) or {}).get("status") == "healthy" for part in wanted)

    def wait_for_workers(self, deadline: float) -> None:
        """Celery: every worker has joined the broker (its log says it is ready)."""
        while True:
            ready = [
                n
                for n in self.components
                if n.startswith("worker") and " ready." in _tail(self.log_dir / f"{n}.log", 400)
            ]
            if len(ready) == self.workers:
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise DeploymentError(f"Celery workers ready: {ready} of {self.workers}; logs in {self.log_dir}")
            time.sleep(1)

    # The REST API ----------------------------------------------------------------------------------

    def login(self) -> None:
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        token = httpx.post(
            self.url + "/auth/token",
            json={"username": "admin", "password": json.loads(passwords.read_text())["admin"]},
            timeout=30,
        ).json()
        self.client = httpx.Client(
            base_url=self.url + "/api/v2", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=30
        )

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call; retried while the api-server or the metadata database is briefly away."""
        assert self.client is not None, "start() the deployment first"
        for attempt in range(30):
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 500:
                response.raise_for_status()
                return response.json() if response.content else None
            if attempt == 29:
                detail = f"{response.status_code} {response.text[:300]}" if response is not None else "no answer"
                raise DeploymentError(f"{method} {path}: {detail}")
            time.sleep(2)
        return None

    def wait_for_dag(self, dag_id: str, deadline: float) -> None:
        """The dag-processor has parsed ``dag_id`` (a fresh deployment has not yet)."""
        while True:
            try:
                self.api("GET", f"/dags/{dag_id}")
                return
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
            if time.monotonic() > deadline:
                errors = self.api("GET", "/importErrors").get("import_errors", [])
                raise StageTimeout(f"{dag_id} was never parsed; import errors: {errors or 'none'}")
            time.sleep(1)

    def trigger(self, dag_id: str, conf: dict | None = None, deadline: float | None = None) -> str:
        """Unpause ``dag_id`` and trigger a run of it, as the UI's trigger button does; returns the run id."""
        self.wait_for_dag(dag_id, deadline or time.monotonic() + 180)
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        found = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})
        return found["task_instances"]

    def task_log(self, ti: dict, lines: int | None = None) -> str:
        """A task instance's log (its latest try), as text; the last ``lines`` lines if given."""
        try_number = max(1, ti.get("try_number") or 1)
        path = f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/logs/{try_number}"
        try:
            found = self.api("GET", path, params={"map_index": ti.get("map_index", -1), "full_content": True})
        except (httpx.HTTPError, DeploymentError) as exc:
            return f"(log not available: {exc})"
        content = found.get("content", "") if isinstance(found, dict) else found
        if isinstance(content, list):
            text = "\n".join(_log_line(c) for c in content if c is not None)
        else:
            text = str(content)
        return "\n".join(text.splitlines()[-lines:]) if lines else text

    def failures(self, dag_id: str, run_id: str) -> list[str]:
        """Each failed task of a run, with the error its last try raised (from its log): ``task: Type: message``."""
        found = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] != "failed":
                continue
            name = ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")
            errors = [line.strip() for line in self.task_log(ti).splitlines() if line.startswith(ERROR_PREFIX)]
            found.append(
                f"{name}: {errors[-1].removeprefix(ERROR_PREFIX.strip()).strip() if errors else '(no error in its log)'}"
            )
        return found

    def wait(self, dag_id: str, run_id: str, deadline_s: float, poll_s: float = 2) -> str:
        """Wait for the run to end; its state. Past ``deadline_s``: :class:`StageTimeout`, naming what is
        still running or waiting, with the last lines of each such task's log."""
        deadline = time.monotonic() + deadline_s
        while True:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in DONE:
                return state
            self.keep_running()
            if time.monotonic() > deadline:
                raise StageTimeout(self.describe(dag_id, run_id, f"{dag_id} passed its deadline of {deadline_s:.0f} s"))
            time.sleep(poll_s)

    def describe(self, dag_id: str, run_id: str, headline: str) -> str:
        """What is not done in a run: each task instance's id, state and host, and its log's last lines."""
        lines = [headline + "; not done:"]
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] in ("success", "skipped"):
                continue
            name = ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")
            lines.append(f"  {name}: {ti['state'] or 'no state'} (host {ti.get('hostname') or '-'})")
            if ti["state"]:
                lines += [f"      | {line}" for line in self.task_log(ti, 8).splitlines()]
        return "\n".join(lines)

    def save_logs(self, dag_id: str, run_id: str, path: Path) -> None:
        """Every task's log of the run, in task order, in one file: what ``airflow dags test`` printed."""
        with path.open("w") as out:
            for ti in sorted(
                self.task_instances(dag_id, run_id), key=lambda t: (t.get("start_date") or "~", t["task_id"])
            ):
                name = ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")
                out.write(f"===== {name}: {ti['state']} on {ti.get('hostname') or '-'} =====\n")
                if ti["state"]:
                    out.write(self.task_log(ti) + "\n")

    def waiting_gate(self, dag_id: str, run_id: str, task_id: str, deadline_s: float = 600) -> str:
        """Once the gate ``task_id`` of the run waits for a person: the REST path that answers it. Fails when the run
        ends first, or past the deadline."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            pending = self.api("GET", "/dags/~/dagRuns/~/hitlDetails", params={"response_received": False}) or {}
            for gate in pending.get("hitl_details", []):
                ti = gate["task_instance"]
                if (ti["dag_run_id"], ti["task_id"], ti.get("state")) == (run_id, task_id, "awaiting_input"):
                    return f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{ti['map_index']}/hitlDetails"
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state not in ("queued", "running"):
                raise DeploymentError(f"{dag_id} ended {state} before {task_id} asked")
            time.sleep(1)
        raise StageTimeout(f"{task_id} of {dag_id} did not ask within {deadline_s:.0f} s")

    def answer_gate(self, path: str, choice: str = "Approve") -> None:
        """Answer a gate (a path from :meth:`waiting_gate`) as the UI's form does."""
        self.api("PATCH", path, json={"chosen_options": [choice], "params_input": {}})

    def run_stage(self, dag_id: str, deadline_s: float, log: Path, conf: dict | None = None) -> tuple[str, str]:
        """Trigger ``dag_id``, wait for it (gates are answered by a ``GateAnswerer``), keep its logs in ``log``.
        Returns (state, run id); raises :class:`StageTimeout` past the deadline (logs kept all the same)."""
        deadline = time.monotonic() + deadline_s
        run_id = self.trigger(dag_id, conf, deadline)
        try:
            return self.wait(dag_id, run_id, max(1.0, deadline - time.monotonic())), run_id
        finally:
            self.save_logs(dag_id, run_id, log)


class GateAnswerer(threading.Thread):
    """Approves the human gates through the REST API as they come up, as an operator does in the UI; notes
    when each was answered (``approved``)."""

    def __init__(self, deployment: Deployment):
        super().__init__(daemon=True)
        self.deployment = deployment
        self.approved: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):  # an operator at the screen: the answer's delay is not Ferry's to measure
            try:
                pending = self.deployment.api(
                    "GET", "/dags/~/dagRuns/~/hitlDetails", params={"response_received": False}
                )
            except (httpx.HTTPError, DeploymentError):
                continue
            for gate in pending.get("hitl_details", []):
                ti = gate["task_instance"]
                key = f"{ti['dag_run_id']}/{ti['task_id']}"
                # Answer only once the task waits for it (an answer that races it there can be lost).
                if gate.get("response_received") or key in self.approved or ti.get("state") != "awaiting_input":
                    continue
                path = (
                    f"/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/{ti['map_index']}"
                    "/hitlDetails"
                )
                choice = "Approve"
                try:
                    self.deployment.api("PATCH", path, json={"chosen_options": [choice], "params_input": {}})
                except (httpx.HTTPError, DeploymentError):
                    continue
                self.approved[key] = time.monotonic()
                print(f"    gate {ti['task_id']}: {choice} (answered through the API)", flush=True)

    def answered(self, task_id: str) -> bool:
        return any(key.endswith("/" + task_id) for key in self.approved)


def _secret(db_url: str) -> str:
    """A secret shared by the deployment's processes (api-server sessions, the JWTs of task execution),
    derived from the metadata database's password so that every process of one stand agrees on it."""
    import hashlib

    return hashlib.sha256(("ferry-deployment:" + db_url).encode()).hexdigest()


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main() -> int:
    """``make airflow``: the deployment in the foreground with the UI, until Ctrl-C."""
    from stand.core import Stand

    stand = Stand()
    home = Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow"))
    deployment = Deployment(home=home, log_dir=home / "deployment")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        deployment.start()
        print(
            f"Airflow ({EXECUTORS[deployment.executor]}, {', '.join(deployment.components)}) on {deployment.url}; "
            f"user admin, password in {home / 'simple_auth_manager_passwords.json.generated'}; "
            f"logs in {deployment.log_dir}; stand in {stand.dir}. Ctrl-C stops it.",
            flush=True,
        )
        while not stopping.wait(1):
            deployment.keep_running()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the deployment ...", flush=True)
        deployment.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
