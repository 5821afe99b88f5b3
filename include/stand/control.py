"""Start and stop the whole stand, and the write load; what the CLI and the tests call."""

from __future__ import annotations

import json
import shlex
import time

from stand.core import ROOT, STAND_PLAN, Stand, venv_bin
from stand.services import SERVICES
from stand.services.pgbouncer import PgBouncer
from stand.services.postgres import APP_ROLE, CLUSTERS, DATABASE


def write_env(stand: Stand) -> None:
    env = {
        "FERRY_PLAN": str(STAND_PLAN),
        "FERRY_STAND_DIR": str(stand.dir),
        "FERRY_STAND_PORT_BASE": str(stand.port_base),
    }
    for service in SERVICES:
        env |= service.env(stand)
    stand.env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items())))
    stand.env_file.chmod(0o600)


def up(stand: Stand) -> None:
    started = time.monotonic()
    if stand.state().get("up") and all(s.healthy(stand) for s in SERVICES):
        write_env(stand)
        print(f"stand already up in {stand.dir} (env: {stand.env_file})")
        return
    if stand.dir.exists():
        print(f"stand in {stand.dir} is incomplete or stopped: starting it afresh")
        down(stand, quiet=True)
    stand.dir.mkdir(parents=True)
    stand.save_state(up=False, rows=stand.rows, port_base=stand.port_base)
    try:
        for service in SERVICES:
            t = time.monotonic()
            service.up(stand)
            print(f"  {service.name}: up in {time.monotonic() - t:.1f} s")
    except BaseException:
        print("a service failed to start: stopping what did start")
        down(stand, quiet=True)
        raise
    stand.save_state(up=True)
    write_env(stand)
    print(f"stand up in {time.monotonic() - started:.1f} s in {stand.dir}; env: {stand.env_file}")


def down(stand: Stand, quiet: bool = False) -> None:
    if stand.dir.exists():
        stand.stop_process("load")
        stand.stop_process("load-target")
        for service in reversed(SERVICES):
            service.down(stand)
        stand.remove()
    if not quiet:
        print(f"stand down; {stand.dir} removed")


def load(stand: Stand, action: str, rate: float = 50, side: str = "source") -> None:
    """Start or stop the write load on ``side``: ``source`` (the old app's, the VM unit saas-worker, through the old
    side's PgBouncer: after D-day's switch at the pooler it writes to the target) or
    ``target`` (the new app's, once it serves: a process of its own, ``load-target``)."""
    name = "load" if side == "source" else f"load-{side}"
    if action == "stop":
        stand.stop_process(name)
        print(f"write load on the {side} stopped: {load_stats(stand, side)}")
        return
    if stand.process_alive(name):
        print(f"write load on the {side} already running")
        return
    password = stand.secret("app_role")
    dsn = f"host=127.0.0.1 port={stand.port(CLUSTERS[side])} dbname={DATABASE} user={APP_ROLE} password={password}"
    if side == "source":  # the old app's path: through its PgBouncer, as a real app's would be
        dsn = PgBouncer().dsn(stand)
    stats = stand.dir / ("load-stats.json" if side == "source" else f"load-stats-{side}.json")
    if side != "source":
        stats.unlink(missing_ok=True)  # this side's counts start at its start
    stand.start_process(
        name,
        [venv_bin("python"), "-m", "stand.load", "--rate", str(rate), "--stats", str(stats)],
        env={"FERRY_LOAD_DSN": dsn, "PYTHONPATH": str(ROOT / "include")},
    )
    if side == "source":
        stand.save_state(load_rate=rate)
    print(f"write load started on the {side} at {rate:g} operations/s as {APP_ROLE}")


def load_stats(stand: Stand, side: str = "source") -> dict:
    stats = stand.dir / ("load-stats.json" if side == "source" else f"load-stats-{side}.json")
    return json.loads(stats.read_text()) if stats.exists() else {}


UNITS = {"saas-web": "old_app", "saas-worker": "load"}


def unit(stand: Stand, action: str, name: str) -> int:
    """Start, stop or tell the state of a unit of the stand's VM; exit codes as systemctl's (3: inactive)."""
    target = UNITS[name]
    service = next((s for s in SERVICES if s.name == target), None)
    active = service.healthy(stand) if service else stand.process_alive(target)
    if action == "status":
        print("active" if active else "inactive")
        return 0 if active else 3
    if action == "stop" and active:
        service.down(stand) if service else load(stand, "stop")
    elif action == "start" and not active:
        service.up(stand) if service else load(stand, "start", rate=stand.state().get("load_rate", 50))
    return 0
