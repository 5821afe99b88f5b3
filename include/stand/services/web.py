"""Small HTTP services of the stand run by uvicorn: the webhook recorder, the old and the new app."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from stand.core import ROOT, Stand, conn_json, venv_bin, wait_for_port


class UvicornApp:
    """An ASGI app on a loopback port of the stand, reachable as an Airflow HTTP connection."""

    def __init__(self, name: str, app: str, port_offset: int, conn_id: str, env: Callable[[Stand], dict[str, str]]):
        self.name, self.app, self.port_offset, self.conn_id, self.app_env = name, app, port_offset, conn_id, env

    def url(self, stand: Stand) -> str:
        return f"http://127.0.0.1:{stand.port(self.port_offset)}"

    def up(self, stand: Stand) -> None:
        if self.healthy(stand):
            return
        port = stand.port(self.port_offset)
        stand.start_process(
            self.name,
            [
                venv_bin("uvicorn"),
                self.app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env={"PYTHONPATH": f"{ROOT / 'include'}"} | self.app_env(stand),
        )
        wait_for_port(port, what=self.name)

    def healthy(self, stand: Stand) -> bool:
        if not stand.process_alive(self.name):
            return False
        try:
            with urllib.request.urlopen(self.url(stand) + "/healthz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def env(self, stand: Stand) -> dict[str, str]:
        port = stand.port(self.port_offset)
        return {
            f"AIRFLOW_CONN_{self.conn_id.upper()}": conn_json(
                conn_type="http", host="127.0.0.1", port=port, schema="http"
            )
        }

    def down(self, stand: Stand) -> None:
        stand.stop_process(self.name)


def app_env(name: str, dsn: Callable[[Stand], str] | None = None) -> Callable[[Stand], dict[str, str]]:
    """The app's name, where it keeps the webhooks it received, and (``dsn``) its database: through its side's
    PgBouncer."""

    def env(stand: Stand) -> dict[str, str]:
        (stand.dir / "apps").mkdir(exist_ok=True)
        found = {"FERRY_APP_NAME": name, "FERRY_APP_FILE": str(stand.dir / "apps" / f"{name}.jsonl")}
        return found | ({"FERRY_APP_DSN": dsn(stand)} if dsn else {})

    return env


def recorder_env(aws_endpoint: Callable[[Stand], str], bucket: str) -> Callable[[Stand], dict[str, str]]:
    def env(stand: Stand) -> dict[str, str]:
        return {
            "RECORDER_BUCKET": bucket,
            "AWS_ENDPOINT_URL": aws_endpoint(stand),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    return env
