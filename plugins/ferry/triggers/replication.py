"""Triggers of Postgres logical replication, polling both servers with an async driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent
from psycopg.rows import dict_row

from ferry.hooks.postgres import conninfo, load_sql
from ferry.progress import catch_up_line, human_seconds

PROGRESS_EVERY_S = 30.0  # at most one progress line per wait every 30 s


async def async_connect(conn_id: str, database: str) -> psycopg.AsyncConnection:
    """An autocommit async connection for an Airflow Postgres connection (its SSL settings included)."""
    conn = await BaseHook.aget_connection(conn_id)
    return await psycopg.AsyncConnection.connect(
        conninfo(conn, database, application_name="ferry-trigger", connect_timeout=10),
        autocommit=True,
        row_factory=dict_row,
    )


class ReplicationCaughtUpTrigger(BaseTrigger):
    """Fire when the subscriber has confirmed the fence's WAL position; fail at once if replication breaks.

    Polls the source's slot (``confirmed_flush_lsn`` against the fence LSN) and the target's
    subscription (enabled, apply errors above the baseline, apply worker running) every ``poll_interval``.
    A disabled subscription or a new apply error fails at once. An enabled subscription without an apply
    worker fails only after ``worker_grace_s``: PostgreSQL's launcher starts the worker again by itself
    (after ``ALTER SUBSCRIPTION ... ENABLE``, a restart, a dropped connection), up to
    ``wal_retrieve_retry_interval`` (5 s by default) later.

    :param source_conn_id: the source's Airflow connection.
    :param source_database: the source database.
    :param target_conn_id: the target's Airflow connection.
    :param target_database: the target database.
    :param subscription: the subscription (and slot) name.
    :param fence_lsn: the WAL position the target must confirm.
    :param baseline_apply_errors: the subscription's ``apply_error_count`` when the wait began.
    :param poll_interval: seconds between polls.
    :param worker_grace_s: how long an enabled subscription may be without an apply worker.
    :param publisher_label: what the messages call the publisher (``target`` for the reverse replication).
    :param subscriber_label: what they call the subscriber.
    """

    def __init__(
        self,
        source_conn_id: str,
        source_database: str,
        target_conn_id: str,
        target_database: str,
        subscription: str,
        fence_lsn: str,
        baseline_apply_errors: int = 0,
        poll_interval: float = 0.25,
        worker_grace_s: float = 30.0,
        publisher_label: str = "source",
        subscriber_label: str = "target",
    ) -> None:
        super().__init__()
        self.publisher_label, self.subscriber_label = publisher_label, subscriber_label
        self.source_conn_id, self.source_database = source_conn_id, source_database
        self.target_conn_id, self.target_database = target_conn_id, target_database
        self.subscription, self.fence_lsn = subscription, fence_lsn
        self.baseline_apply_errors, self.poll_interval = baseline_apply_errors, poll_interval
        self.worker_grace_s = worker_grace_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "ferry.triggers.replication.ReplicationCaughtUpTrigger",
            {
                "source_conn_id": self.source_conn_id,
                "source_database": self.source_database,
                "target_conn_id": self.target_conn_id,
                "target_database": self.target_database,
                "subscription": self.subscription,
                "fence_lsn": self.fence_lsn,
                "baseline_apply_errors": self.baseline_apply_errors,
                "poll_interval": self.poll_interval,
                "worker_grace_s": self.worker_grace_s,
                "publisher_label": self.publisher_label,
                "subscriber_label": self.subscriber_label,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        slot_sql, sub_sql = load_sql("slot_caught_up"), load_sql("subscription_status")
        started = time.monotonic()
        last_log = 0.0
        first_behind: float | None = None
        no_worker_since: float | None = None
        async with (
            await async_connect(self.source_conn_id, self.source_database) as source,
            await async_connect(self.target_conn_id, self.target_database) as target,
        ):
            while True:
                slot = await (
                    await source.execute(slot_sql, {"fence_lsn": self.fence_lsn, "slot_name": self.subscription})
                ).fetchone()
                if slot is None:
                    yield self._failed(
                        f"slot {self.subscription} is gone from the {self.publisher_label}: replication cannot catch up"
                    )
                    return
                if slot["caught_up"]:
                    self.log.info(
                        "Caught up to the fence %s in %s", self.fence_lsn, human_seconds(time.monotonic() - started)
                    )
                    yield TriggerEvent(
                        {
                            "status": "success",
                            "fence_lsn": self.fence_lsn,
                            "confirmed_flush_lsn": slot["confirmed_flush_lsn"],
                            "waited_s": round(time.monotonic() - started, 3),
                            "at": time.time(),
                        }
                    )
                    return
                sub = await (await target.execute(sub_sql, {"subscription": self.subscription})).fetchone()
                if sub is None or not sub["enabled"]:
                    yield self._failed(
                        f"subscription {self.subscription} is {'missing' if sub is None else 'disabled'} while "
                        f"{slot['behind_bytes']} bytes behind the fence; read the {self.subscriber_label}'s server log for the apply "
                        "error, fix it, then ALTER SUBSCRIPTION ... ENABLE"
                    )
                    return
                if sub["apply_error_count"] > self.baseline_apply_errors:
                    yield self._failed(
                        f"subscription {self.subscription} hit {sub['apply_error_count'] - self.baseline_apply_errors} "
                        f"new apply error(s) (a conflicting row on the {self.subscriber_label}?); see the "
                        f"{self.subscriber_label}'s server log"
                    )
                    return
                if sub["worker_pid"] is not None:
                    no_worker_since = None
                elif no_worker_since is None:
                    no_worker_since = time.monotonic()
                    self.log.info("Subscription %s has no apply worker; waiting for it to start", self.subscription)
                elif time.monotonic() - no_worker_since > self.worker_grace_s:
                    yield self._failed(
                        f"subscription {self.subscription} is enabled but has had no apply worker for "
                        f"{self.worker_grace_s:.0f} s while {slot['behind_bytes']} bytes behind the fence; read the "
                        f"{self.subscriber_label}'s server log (the worker cannot connect to the {self.publisher_label}, "
                        "or exits at start)"
                    )
                    return
                if first_behind is None:
                    first_behind = float(slot["behind_bytes"])
                if not last_log or time.monotonic() - last_log >= PROGRESS_EVERY_S:  # at most a line every 30 s
                    self.log.info(
                        "Catch-up to %s: %s",
                        self.fence_lsn,
                        catch_up_line(float(slot["behind_bytes"]), first_behind, time.monotonic() - started),
                    )
                    last_log = time.monotonic()
                await asyncio.sleep(self.poll_interval)

    def _failed(self, message: str) -> TriggerEvent:
        return TriggerEvent({"status": "error", "message": message, "fence_lsn": self.fence_lsn})
