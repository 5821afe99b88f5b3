"""Keep secret values out of logs, XComs, the ledger and reports.

Secrets live in Airflow connections; Ferry learns them only to register them with Airflow's
secret masker and to redact them from anything it writes itself (reports, XComs, the ledger).
"""

from __future__ import annotations

from urllib.parse import quote

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from ferry.plan import Plan

REDACTED = "***"
_SECRET_EXTRAS = ("aws_secret_access_key", "aws_session_token", "private_key", "private_key_passphrase", "token")


def plan_secrets(plan: Plan) -> list[str]:
    """Every secret value of the plan's connections, each registered with the secret masker."""
    found: set[str] = set()
    for conn_id in plan.connections():
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception:  # noqa: BLE001 - a missing connection has no secret; the connection check reports it
            continue
        values = [conn.password] + [str(conn.extra_dejson.get(k) or "") for k in _SECRET_EXTRAS]
        for value in filter(None, values):
            found.update({value, quote(value, safe="")})
    for value in found:
        mask_secret(value)
    # Longest first, so a secret containing another is replaced whole.
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secrets:
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return text
