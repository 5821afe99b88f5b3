"""Webhook operators: replay what the recorder kept to the new application (or, on rollback, the old one)."""

from __future__ import annotations

from typing import Any

import httpx
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from ferry.operators.base import FerryOperator
from ferry.webhooks import replay


class WebhooksReplayOperator(FerryOperator):
    """Replay every recorded webhook, in received order, each once, to the new app (or the old one).

    Fails when an event could not be delivered (it and those after it wait for the next run) or
    when the counts do not reconcile.

    :param destination: ``new`` (the plan's replay_url / replay_conn_id) or ``old`` (old_app_url / old_app_conn_id).
    :param timeout_s: HTTP timeout of one delivery.
    :param attempts: tries per event on 5xx and timeouts.
    :param backoff_s: first wait between tries, doubled each time.
    """

    template_fields = ("destination",)

    def __init__(
        self,
        *,
        destination: str = "new",
        timeout_s: float = 10,
        attempts: int = 6,
        backoff_s: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.destination = destination
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s

    def base_url(self) -> str:
        hooks = self.plan.webhooks
        url, conn_id = (
            (hooks.replay_url, hooks.replay_conn_id)
            if self.destination == "new"
            else (hooks.old_app_url, hooks.old_app_conn_id)
        )
        if url:
            return url
        if not conn_id:
            raise AirflowFailException("webhooks.old_app_url: the plan says nowhere to replay to the old app")
        conn = BaseHook.get_connection(conn_id)
        return f"{conn.schema or 'https'}://{conn.host}" + (f":{conn.port}" if conn.port else "")

    def execute(self, context: Any) -> dict[str, Any]:
        if self.plan.webhooks is None:
            raise AirflowFailException("the plan has no webhooks section")
        if self.destination not in ("new", "old"):
            raise AirflowFailException(f"destination must be new or old, not {self.destination!r}")
        hooks = self.plan.webhooks
        s3 = S3Hook(aws_conn_id=self.plan.aws.conn_id).get_conn()
        with httpx.Client(timeout=self.timeout_s) as client:
            report = replay(
                s3,
                hooks.recorder_bucket,
                hooks.recorder_prefix,
                self.base_url(),
                self.destination,
                client=client,
                attempts=self.attempts,
                backoff_s=self.backoff_s,
                progress=self.log.info,
            )
        if report.delivered_now:
            self.record(
                context,
                "replay_webhooks",
                f"webhooks:{self.destination}",
                None,
                {"delivered_now": report.delivered_now, "delivered": report.delivered, "recorded": report.recorded},
            )
        if not report.reconciled:
            raise AirflowFailException(f"webhook counts do not reconcile: {report.to_dict()}")
        if report.failed:
            raise AirflowFailException(
                f"{len(report.failed)} webhook(s) not delivered, {report.pending} waiting behind: {report.failed[0]['error']}. "
                "Fix the cause and run this task again; delivered ones are not sent twice."
            )
        return report.to_dict()
