"""Kubernetes operators on the new cluster: scale to zero and back, rollout restart, rollout wait, readiness."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.sdk.exceptions import AirflowFailException
from kubernetes.client.rest import ApiException

from ferry.hooks.ecr import EcrImageHook
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class KubeBaseOperator(FerryOperator):
    """What the Kubernetes operators share: the apps/v1 client of the plan's cluster and rollout waits."""

    def apps(self) -> Any:
        if self.plan.kubernetes is None:
            raise AirflowFailException("the plan has no kubernetes section")
        return KubernetesHook(conn_id=self.plan.kubernetes.conn_id).apps_v1_client

    def rollout_done(self, apps: Any, name: str) -> tuple[bool, str]:
        """Whether the deployment's rollout is complete, as ``kubectl rollout status`` judges it, and why not."""
        d = apps.read_namespaced_deployment(name, self.plan.kubernetes.namespace)
        s, wanted = d.status, d.spec.replicas or 0
        state = (
            f"generation {d.metadata.generation} observed {s.observed_generation}, {s.updated_replicas or 0} updated, "
            f"{s.available_replicas or 0} available of {wanted}"
        )
        done = (
            (s.observed_generation or 0) >= d.metadata.generation
            and (s.updated_replicas or 0) == wanted
            and (s.available_replicas or 0) == wanted
            and (s.replicas or 0) == wanted
        )
        return done, state

    def rollout_timeout(self, context: Any) -> float:
        """This task's rollout wait: the run's ``rollout_timeout_s`` param, else the task's ``timeout_s``."""
        return float(self.param(context, "rollout_timeout_s", self.timeout_s))

    def wait_for_rollouts(self, apps: Any, names: list[str], timeout_s: float, poll_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(names)
        while pending:
            states = {n: self.rollout_done(apps, n) for n in pending}
            pending = [n for n, (done, _) in states.items() if not done]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise AirflowFailException(
                    f"rollout not complete after {timeout_s:.0f} s: "
                    + "; ".join(f"{n} ({states[n][1]})" for n in pending)
                    + ". Check the pods of these deployments (kubectl describe / logs)."
                )
            time.sleep(poll_s)
        self.log.info("Rollout complete: %s", ", ".join(names))


class KubeScaleDownDeploymentsOperator(KubeBaseOperator):
    """Scale every deployment in the plan's scope to zero, recording each replica count first.

    Inverse: KubeRestoreReplicasOperator.
    """

    def execute(self, context: Any) -> dict[str, int]:
        apps, ns = self.apps(), self.plan.kubernetes.namespace
        counts = {}
        for d in self.plan.kubernetes.deployments:
            current = apps.read_namespaced_deployment_scale(d.name, ns).spec.replicas or 0
            counts[d.name] = current
            if current == 0:
                self.log.info("%s: already at 0", d.name)
                continue
            if self.would(context, Action.SCALE_DEPLOYMENT, Target.k8s(ns, d.name), current, 0):
                continue
            with self.changing(context, Action.SCALE_DEPLOYMENT, Target.k8s(ns, d.name), current, 0):
                apps.patch_namespaced_deployment_scale(d.name, ns, {"spec": {"replicas": 0}})
            self.log.info("%s: %d -> 0 replicas", d.name, current)
        return counts


class KubeRestoreReplicasOperator(KubeBaseOperator):
    """Scale each deployment back to the count recorded before Ferry first scaled it (else the plan's), and wait.

    :param timeout_s: the longest wait for the rollouts.
    :param poll_s: seconds between checks.
    """

    def __init__(self, *, timeout_s: float = 600, poll_s: float = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout_s, self.poll_s = timeout_s, poll_s

    def execute(self, context: Any) -> dict[str, int]:
        apps, ns = self.apps(), self.plan.kubernetes.namespace
        history = self.ledger.records(action=Action.SCALE_DEPLOYMENT)
        wanted = {}
        for d in self.plan.kubernetes.deployments:
            recorded = [r for r in history if r.target == Target.k8s(ns, d.name)]
            wanted[d.name] = recorded[0].before if recorded else d.replicas
            current = apps.read_namespaced_deployment_scale(d.name, ns).spec.replicas or 0
            if current == wanted[d.name]:
                self.log.info("%s: already at %d", d.name, current)
                continue
            if self.would(context, Action.RESTORE_REPLICAS, Target.k8s(ns, d.name), current, wanted[d.name]):
                continue
            with self.changing(context, Action.RESTORE_REPLICAS, Target.k8s(ns, d.name), current, wanted[d.name]):
                apps.patch_namespaced_deployment_scale(d.name, ns, {"spec": {"replicas": wanted[d.name]}})
            self.log.info("%s: %d -> %d replicas", d.name, current, wanted[d.name])
        if not self.is_dry_run(context):
            self.wait_for_rollouts(apps, list(wanted), self.rollout_timeout(context), self.poll_s)
        return wanted


class KubeRolloutRestartOperator(KubeBaseOperator):
    """Restart a deployment's pods as ``kubectl rollout restart`` does (the restartedAt annotation), and wait.

    Once per DAG run: a re-run of the same run finds its restart in the ledger and only waits.

    :param deployment: the deployment (default: the plan's PgBouncer).
    :param timeout_s: the longest wait for the new pods.
    :param poll_s: seconds between checks.
    """

    template_fields = ("deployment",)

    def __init__(
        self, *, deployment: str | None = None, timeout_s: float = 600, poll_s: float = 2, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.deployment, self.timeout_s, self.poll_s = deployment, timeout_s, poll_s

    def execute(self, context: Any) -> str:
        apps, ns = self.apps(), self.plan.kubernetes.namespace
        name = self.deployment or self.plan.kubernetes.pgbouncer
        if not name:
            raise AirflowFailException("no deployment given and kubernetes.pgbouncer is not set")
        target = Target.k8s(ns, name)
        done = [
            r
            for r in self.ledger.records(action=Action.ROLLOUT_RESTART)
            if r.target == target and r.run_id == context["run_id"]
        ]
        if done:
            self.log.info("%s was restarted in this run at %s; waiting only", name, done[-1].after)
        else:
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            before = (apps.read_namespaced_deployment(name, ns).spec.template.metadata.annotations or {}).get(
                RESTARTED_AT
            )
            if self.would(context, Action.ROLLOUT_RESTART, target, before, "now"):
                return name
            with self.changing(context, Action.ROLLOUT_RESTART, target, before, stamp):
                apps.patch_namespaced_deployment(
                    name, ns, {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
                )
            self.log.info("%s: rollout restart at %s", name, stamp)
        self.wait_for_rollouts(apps, [name], self.rollout_timeout(context), self.poll_s)
        return name


class KubeReviewDeploymentsOperator(KubeBaseOperator):
    """Check the CI/CD side: each deployment exists in the new cluster, runs the plan's image, and that image is in ECR."""

    def execute(self, context: Any) -> dict[str, Any]:
        apps, ns = self.apps(), self.plan.kubernetes.namespace
        ecr = EcrImageHook(aws_conn_id=self.plan.aws.conn_id)
        problems, found = [], []
        for i, d in enumerate(self.plan.kubernetes.deployments):
            try:
                live = apps.read_namespaced_deployment(d.name, ns)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                problems.append(f"kubernetes.deployments[{i}]: deployment {d.name} does not exist in namespace {ns}")
                continue
            images = [c.image for c in live.spec.template.spec.containers]
            found.append(f"{d.name}: {', '.join(images)}")
            if d.image and d.image not in images:
                problems.append(f"kubernetes.deployments[{i}].image: {d.name} runs {images}, the plan says {d.image}")
            for image in [d.image] if d.image else images:
                if not ecr.image_exists(image):
                    problems.append(f"{d.name}: image {image} is not in ECR")
        for line in found:
            self.log.info("  %s", line)
        if problems:
            raise AirflowFailException("the new cluster is not ready: " + "; ".join(problems))
        self.log.info("All %d deployments exist with their images in ECR", len(found))
        return {"deployments": found}
