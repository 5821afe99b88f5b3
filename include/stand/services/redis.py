"""Redis from Debian's ``redis-server`` package: the Celery broker of the stand's Airflow deployment.

Its own instance on a loopback port, with a password, persisting nothing (a lost queue is what a
broker crash drill wants to see handled); never the system's redis unit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stand.core import Stand, wait_for_port

PORT_OFFSET = 13
REDIS_SERVER = "/usr/bin/redis-server"


class Redis:
    name = "redis"

    def folder(self, stand: Stand) -> Path:
        return stand.dir / "redis"

    def up(self, stand: Stand) -> None:
        if self.healthy(stand):
            return
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError(f"{REDIS_SERVER} is missing: install Debian's redis-server package (make apt does)")
        self.folder(stand).mkdir(mode=0o700, exist_ok=True)
        config = self.folder(stand) / "redis.conf"
        config.write_text(
            f"port {stand.port(PORT_OFFSET)}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n"
            f'dir {self.folder(stand)}\nsave ""\nappendonly no\nrequirepass {stand.secret("redis")}\n'
        )
        config.chmod(0o600)
        stand.start_process(self.name, [REDIS_SERVER, str(config)])
        wait_for_port(stand.port(PORT_OFFSET), what="redis-server")

    def healthy(self, stand: Stand) -> bool:
        return stand.process_alive(self.name)

    def env(self, stand: Stand) -> dict[str, str]:
        # The deployment sets Celery's broker from it (the password is a secret: never logged).
        return {"FERRY_CELERY_BROKER": f"redis://:{stand.secret('redis')}@127.0.0.1:{stand.port(PORT_OFFSET)}/0"}

    def down(self, stand: Stand) -> None:
        stand.stop_process(self.name)
        shutil.rmtree(self.folder(stand), ignore_errors=True)
