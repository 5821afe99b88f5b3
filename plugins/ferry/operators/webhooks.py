"""Webhook operators: replay what the recorder kept to the new application (or, on rollback, the old one)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import yaml
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException
from kubernetes.client.rest import ApiException

from ferry.hooks.webhooks import Recorded, ReplayReport, list_keys, pending_events, recorded_events, replay
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator
from ferry.operators.kube import KubeBaseOperator
from ferry.paths import INCLUDE_DIR


def destination_url(plan: Any, destination: str) -> str:
    """The base URL of ``new`` (replay_url / replay_conn_id) or ``old`` (old_app_url / old_app_conn_id)."""
    hooks = plan.webhooks
    url, conn_id = (
        (hooks.replay_url, hooks.replay_conn_id) if destination == "new" else (hooks.old_app_url, hooks.old_app_conn_id)
    )
    if url:
        return url
    if not conn_id:
        field, app = ("replay_url", "new") if destination == "new" else ("old_app_url", "old")
        raise AirflowFailException(
            f"webhooks.{field}: the plan says nowhere to send webhooks to the {app} app; "
            f"set webhooks.{field} or webhooks.{field.replace('url', 'conn_id')}"
        )
    conn = BaseHook.get_connection(conn_id)
    return f"{conn.schema or 'https'}://{conn.host}" + (f":{conn.port}" if conn.port else "")


class WebhooksReplayOperator(FerryOperator):
    """Replay every recorded webhook, in received order, each once, to the new app (or the old one).

    Fails when an event could not be delivered (it and those after it wait for the next run) or
    when the counts do not reconcile.

    :param destination: ``new`` (the plan's replay_url / replay_conn_id) or ``old`` (old_app_url / old_app_conn_id).
    :param timeout_s: HTTP timeout of one delivery.
    :param attempts: tries per event on 5xx and timeouts.
    :param backoff_s: first wait between tries, doubled each time.
    :param skip_delivered_to_new: to the old app, leave out the events the new app took (a rollback after the
        cutover: their effects reached the old database through the reverse replication).
    :param max_passes: replays of what reached the recorder while the last one sent (see ``send_until_quiet``).
    """

    template_fields = ("destination",)

    def __init__(
        self,
        *,
        destination: str = "new",
        timeout_s: float = 10,
        attempts: int = 6,
        backoff_s: float = 0.5,
        skip_delivered_to_new: bool = False,
        max_passes: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.destination, self.max_passes = destination, max_passes
        self.skip_delivered_to_new = skip_delivered_to_new
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s

    def execute(self, context: Any) -> dict[str, Any]:
        if self.plan.webhooks is None:
            raise AirflowFailException("the plan has no webhooks section")
        if self.destination not in ("new", "old"):
            raise AirflowFailException(f"destination must be new or old, not {self.destination!r}")
        hooks = self.plan.webhooks
        s3 = S3Hook(aws_conn_id=self.plan.aws.conn_id).get_conn()
        target = Target.webhooks(self.destination)
        also = ("new",) if self.skip_delivered_to_new and self.destination == "old" else ()
        events = recorded_events(s3, hooks.recorder_bucket, hooks.recorder_prefix)  # read once, for both
        waiting = pending_events(s3, hooks.recorder_bucket, hooks.recorder_prefix, self.destination, events, also)
        if self.would(context, Action.REPLAY_WEBHOOKS, target, None, {"pending": len(waiting)}):
            return {"dry_run": True, "pending": len(waiting)}
        with ExitStack() as stack:
            if waiting:  # the outcome is recorded even when some failed: those delivered were delivered
                change = stack.enter_context(
                    self.changing(context, Action.REPLAY_WEBHOOKS, target, None, {"pending": len(waiting)})
                )
            report = self.send_until_quiet(s3, events, also)
            if waiting:
                change.after = {
                    "delivered_now": report.delivered_now,
                    "delivered": report.delivered,
                    "recorded": report.recorded,
                }
        if not report.reconciled:
            raise AirflowFailException(f"webhook counts do not reconcile: {report.to_dict()}")
        if report.failed:
            raise AirflowFailException(
                f"{len(report.failed)} webhook(s) not delivered, {report.pending} waiting behind: {report.failed[0]['error']}. "
                "Fix the cause and run this task again; delivered ones are not sent twice."
            )
        return report.to_dict()

    def send_until_quiet(self, s3: Any, events: list[Recorded], also: tuple[str, ...]) -> ReplayReport:
        """Replay ``events``, then what reached the recorder meanwhile (a provider's DNS cache can still point
        there for a TTL after the switch), until a pass finds nothing new or ``max_passes`` ran. One report for
        them all: ``delivered_now`` counts every pass's sends."""
        hooks = self.plan.webhooks
        sent, report = 0, None
        for number in range(1, self.max_passes + 1):
            report = replay(
                s3,
                hooks.recorder_bucket,
                hooks.recorder_prefix,
                destination_url(self.plan, self.destination),
                self.destination,
                timeout_s=self.timeout_s,
                attempts=self.attempts,
                backoff_s=self.backoff_s,
                progress=self.log.info,
                order_key=hooks.order_key,
                concurrency=hooks.replay_concurrency,
                also_done_at=also,
                events=events,
            )
            sent += report.delivered_now
            read = {r.key for r in events}
            arrived = [k for k in list_keys(s3, hooks.recorder_bucket, hooks.recorder_prefix) if k not in read]
            if report.failed or not arrived:
                break
            self.log.info(
                "Pass %d done; %d object(s) reached the recorder while it sent: sending what they hold",
                number,
                len(arrived),
            )
            events = recorded_events(s3, hooks.recorder_bucket, hooks.recorder_prefix)
        report.delivered_now = sent
        report.delivered_before = report.recorded - sent - len(report.failed) - report.pending
        return report


class WebhooksDeployRecorderOperator(KubeBaseOperator):
    """Deploy the webhook recorder (``include/webhook_recorder/k8s.yaml``) to the new cluster and wait until ready.

    The manifest's namespace and bucket come from the plan. Creates what is missing, replaces a
    deployment whose spec differs, leaves the rest. Inverse: WebhooksRemoveRecorderOperator.

    :param timeout_s: the longest wait for the rollout.
    :param poll_s: seconds between checks.
    """

    def __init__(self, *, timeout_s: float = 600, poll_s: float = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout_s, self.poll_s = timeout_s, poll_s

    def manifests(self) -> list[dict[str, Any]]:
        docs = [d for d in yaml.safe_load_all((INCLUDE_DIR / "webhook_recorder" / "k8s.yaml").read_text()) if d]
        for doc in docs:
            doc["metadata"]["namespace"] = self.plan.kubernetes.namespace
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    container["env"] = [e for e in container.get("env", []) if e["name"] != "RECORDER_BUCKET"] + [
                        {"name": "RECORDER_BUCKET", "value": self.plan.webhooks.recorder_bucket}
                    ]
        return docs

    def execute(self, context: Any) -> list[str]:
        if self.plan.webhooks is None:
            raise AirflowFailException("the plan has no webhooks section")
        apps, ns = self.apps(), self.plan.kubernetes.namespace
        core = KubernetesHook(conn_id=self.plan.kubernetes.conn_id).core_v1_client
        done = []
        for doc in self.manifests():
            name, kind = doc["metadata"]["name"], doc["kind"]
            read, create, replace = {
                "Deployment": (
                    apps.read_namespaced_deployment,
                    apps.create_namespaced_deployment,
                    apps.replace_namespaced_deployment,
                ),
                "Service": (core.read_namespaced_service, core.create_namespaced_service, None),
            }[kind]
            try:
                live = apps.api_client.sanitize_for_serialization(read(name, ns))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                target = Target.k8s_object(ns, kind, name)
                if self.would(context, Action.CREATE_RECORDER, target, None, {"kind": kind}):
                    continue
                with self.changing(context, Action.CREATE_RECORDER, target, None, {"kind": kind}):
                    create(ns, doc)
                done.append(f"{kind}/{name} created")
                continue
            if (
                replace
                and live["spec"]["template"]["spec"]["containers"] != doc["spec"]["template"]["spec"]["containers"]
            ):
                target, before = Target.k8s_object(ns, kind, name), {"generation": live["metadata"]["generation"]}
                if self.would(context, Action.UPDATE_RECORDER, target):
                    continue
                with self.changing(context, Action.UPDATE_RECORDER, target, before, {"kind": kind}):
                    replace(name, ns, doc)
                done.append(f"{kind}/{name} replaced")
        if self.is_dry_run(context):
            return done
        self.wait_for_rollouts(apps, ["webhook-recorder"], self.rollout_timeout(context), self.poll_s)
        self.log.info("Webhook recorder ready in %s: %s", ns, ", ".join(done) or "nothing to change")
        return done


class WebhooksRemoveRecorderOperator(KubeBaseOperator):
    """Remove what WebhooksDeployRecorderOperator created (per the ledger); what it found there stays."""

    def execute(self, context: Any) -> list[str]:
        apps, ns = self.apps(), self.plan.kubernetes.namespace
        core = KubernetesHook(conn_id=self.plan.kubernetes.conn_id).core_v1_client
        removed = []
        for record in self.ledger.records(action=Action.CREATE_RECORDER):
            kind, name = record.target.k8s_kind_and_name
            read, delete = (
                (apps.read_namespaced_deployment, apps.delete_namespaced_deployment)
                if kind == "Deployment"
                else (core.read_namespaced_service, core.delete_namespaced_service)
            )
            try:
                read(name, ns)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                continue
            if self.would(context, Action.REMOVE_RECORDER, record.target, {"kind": kind}):
                continue
            with self.changing(context, Action.REMOVE_RECORDER, record.target, {"kind": kind}, None):
                delete(name, ns)
            removed.append(f"{kind}/{name}")
        return removed
