"""Run ``airflow standalone`` in the foreground and make Ctrl-C stop all of it.

On SIGINT or SIGTERM it passes SIGINT to ``airflow standalone`` (the only signal it stops cleanly
on). Airflow 3.3's LocalExecutor can then wait forever on an idle worker that never exits
(apache/airflow#67870), leaving the scheduler behind: after a grace period this ends what is left
of its own session, by pid, and nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = 20


def session_members(sid: int) -> list[int]:
    """Pids of live processes in session ``sid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def main() -> int:
    airflow = str(Path(sys.executable).parent / "airflow")
    proc = subprocess.Popen([airflow, "standalone"], start_new_session=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            print("\nstopping airflow standalone ...", flush=True)
            proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while proc.poll() is None and not stopping:
        time.sleep(0.5)
    deadline = time.monotonic() + GRACE_S
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    leftovers = session_members(proc.pid)
    if leftovers:
        print(f"ending {len(leftovers)} process(es) airflow left behind: {leftovers}", flush=True)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
