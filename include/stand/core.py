"""What every stand service shares: where the stand lives, its ports, its secrets, its processes."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parents[2]
STAND_PLAN = Path(__file__).resolve().parent / "plan.stand.yaml"
DEFAULT_ROWS = 1_000_000


@dataclass
class Stand:
    """One stand instance: a folder for its data, logs and state, and a base for its loopback ports."""

    dir: Path = field(default_factory=lambda: Path(os.environ.get("FERRY_STAND_DIR", "/tmp/ferry-stand")))
    port_base: int = field(default_factory=lambda: int(os.environ.get("FERRY_STAND_PORT_BASE", "24320")))
    rows: int = field(default_factory=lambda: int(os.environ.get("FERRY_STAND_ROWS", str(DEFAULT_ROWS))))

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def env_file(self) -> Path:
        return self.dir / "stand.env"

    def port(self, offset: int) -> int:
        return self.port_base + offset

    def state(self) -> dict:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def save_state(self, **updates: object) -> None:
        self.state_file.write_text(json.dumps(self.state() | updates, indent=2))
        self.state_file.chmod(0o600)

    def secret(self, name: str) -> str:
        """A random password for ``name``, made once per stand and kept in its state file."""
        known = self.state().get("secrets", {})
        if name not in known:
            known[name] = secrets.token_urlsafe(18)
            self.save_state(secrets=known)
        return known[name]

    def log(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def start_process(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        """Start a background process of the stand, logging to its own file; remember its pid."""
        self.log(name).parent.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=(os.environ | (env or {})),
                start_new_session=True,
                cwd=ROOT,
            )
        pids = self.state().get("pids", {})
        pids[name] = {"pid": proc.pid, "argv0": argv[0]}
        self.save_state(pids=pids)
        return proc.pid

    def process_alive(self, name: str) -> bool:
        entry = self.state().get("pids", {}).get(name)
        return bool(entry) and _is_ours(entry["pid"], entry["argv0"])

    def stop_process(self, name: str, timeout: float = 10) -> None:
        """Stop a process this stand started (by its recorded pid, only if it is still ours)."""
        pids = self.state().get("pids", {})
        entry = pids.pop(name, None)
        if entry and _is_ours(entry["pid"], entry["argv0"]):
            os.killpg(entry["pid"], signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _is_ours(entry["pid"], entry["argv0"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _is_ours(entry["pid"], entry["argv0"]):
                os.killpg(entry["pid"], signal.SIGKILL)
        if self.state_file.exists():
            self.save_state(pids=pids)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _is_ours(pid: int, argv0: str) -> bool:
    """The pid is alive, not a zombie, and still runs the program we started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:2]
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    # A script's cmdline starts with its interpreter, then the script; some daemons retitle
    # themselves ("sshd: /usr/sbin/sshd -D ... [listener]").
    names = {Path(arg).name for arg in cmdline} | {Path(word.rstrip(":")).name for word in cmdline[0].split()[:2]}
    return status != "Z" and Path(argv0).name in names


def wait_for_port(port: int, timeout: float = 20, what: str = "service") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def venv_bin(name: str) -> str:
    """A console script of the interpreter running the stand (the project's venv)."""
    return str(Path(sys.executable).parent / name)


def conn_json(**fields: object) -> str:
    return json.dumps({k: v for k, v in fields.items() if v is not None})


class Service(Protocol):
    """One service of the stand."""

    name: str

    def up(self, stand: Stand) -> None:
        """Start the service (the stand folder exists); leave it ready to use."""

    def healthy(self, stand: Stand) -> bool:
        """The service runs and answers."""

    def env(self, stand: Stand) -> dict[str, str]:
        """Environment variables (Airflow connections among them) that reach the service."""

    def down(self, stand: Stand) -> None:
        """Stop the service; the caller removes the stand folder afterwards."""
