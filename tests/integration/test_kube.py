"""Kubernetes operators against the stand's API stand-in, through the official client and KubernetesHook."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from kubernetes.client.rest import ApiException

from stand.seeding import deployment
from tests.integration.conftest import TEST_DAGS, run_dag, twice


@pytest.fixture
def kube(stand):
    hook = KubernetesHook(conn_id="kube_stand")
    return hook.apps_v1_client, hook.core_v1_client


def replicas(apps) -> dict[str, int]:
    return {d.metadata.name: d.spec.replicas for d in apps.list_namespaced_deployment("saas").items}


def pods(core, name: str) -> list[str]:
    return sorted(
        p.metadata.name for p in core.list_namespaced_pod("saas", label_selector=f"app.kubernetes.io/name={name}").items
    )


def test_scale_to_zero_and_back_restores_the_exact_counts(kube):
    apps, core = kube
    assert replicas(apps) == {"web": 2, "sidekiq": 1, "pgbouncer": 2}
    assert twice("ferry_test_kube_scale_down") == 3
    assert replicas(apps) == {"web": 0, "sidekiq": 0, "pgbouncer": 0}
    assert twice("ferry_test_kube_restore") == 3
    assert replicas(apps) == {"web": 2, "sidekiq": 1, "pgbouncer": 2}
    assert len(pods(core, "web")) == 2 and len(pods(core, "sidekiq")) == 1  # the restore waited for the pods


def test_rollout_restart_waits_for_the_new_pods(kube):
    apps, core = kube
    before = pods(core, "pgbouncer")
    started = time.monotonic()
    assert run_dag(TEST_DAGS, "ferry_test_kube_restart").state == "success"
    after = pods(core, "pgbouncer")
    assert len(after) == 2 and not set(after) & set(before)  # new pods, all of them
    assert time.monotonic() - started >= 1.0  # the stand-in takes 1 s to roll out: it was waited for
    annotations = apps.read_namespaced_deployment("pgbouncer", "saas").spec.template.metadata.annotations
    assert "kubectl.kubernetes.io/restartedAt" in annotations


def test_a_stuck_rollout_is_named_when_the_wait_times_out(kube, capfd):
    apps, _ = kube
    apps.patch_namespaced_deployment("sidekiq", "saas", {"metadata": {"annotations": {"stand.ferry/stuck": "true"}}})
    try:
        capfd.readouterr()
        assert run_dag(TEST_DAGS, "ferry_test_kube_wait").state == "failed"
        out = "".join(capfd.readouterr())
        assert "rollout not complete after 3 s: sidekiq (" in out
        assert "web (" not in out.split("rollout not complete")[1].split("\n")[0]
    finally:
        apps.patch_namespaced_deployment("sidekiq", "saas", {"metadata": {"annotations": {"stand.ferry/stuck": None}}})


def test_review_of_the_new_cluster(kube, mistaken_plan, capfd):
    assert run_dag(TEST_DAGS, "ferry_test_kube_review").state == "success"
    mistaken_plan(
        lambda d: d["kubernetes"]["deployments"][0].update(
            image="123456789012.dkr.ecr.us-east-1.amazonaws.com/saas-web:2026.12.01"
        )
    )
    capfd.readouterr()
    assert run_dag(TEST_DAGS, "ferry_test_kube_review").state == "failed"
    out = "".join(capfd.readouterr())
    assert "kubernetes.deployments[0].image: web runs" in out
    assert "image 123456789012.dkr.ecr.us-east-1.amazonaws.com/saas-web:2026.12.01 is not in ECR" in out


def test_the_stand_in_answers_errors_as_the_api_server_does(kube):
    apps, _ = kube
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", "saas")
    with pytest.raises(ApiException) as exists:
        apps.create_namespaced_deployment("saas", deployment("web", 1, "x:1"))
    with pytest.raises(ApiException) as bad:
        apps.patch_namespaced_deployment_scale("web", "saas", {"spec": {"replicas": -1}})
    for caught, code, reason in ((missing, 404, "NotFound"), (exists, 409, "AlreadyExists"), (bad, 422, "Invalid")):
        body = json.loads(caught.value.body)
        assert (
            caught.value.status == code
            and body["kind"] == "Status"
            and body["reason"] == reason
            and body["code"] == code
        )


def pod_processes(core, name: str) -> dict[str, tuple[int, int]]:
    """Each pod of ``name``: its process id and the port its process listens on."""
    return {
        p.metadata.name: (
            int(p.status.container_statuses[0].container_id.removeprefix("standin://")),
            int(p.metadata.annotations["stand.ferry/port"]),
        )
        for p in core.list_namespaced_pod("saas", label_selector=f"app.kubernetes.io/name={name}").items
    }


def alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_pods_are_processes_ready_when_their_probe_passes(kube):
    """The stand-in's pods run: the web deployment's are the new application, answering its readiness probe
    through the target's PgBouncer; a rollout restart ends the old processes only once the new ones are ready; a
    process that dies is started again (its restart counted) and the deployment is not ready meanwhile."""
    import httpx

    apps, core = kube
    before = pod_processes(core, "web")
    assert len(before) == 2 and all(alive(pid) for pid, _ in before.values())
    for _, port in before.values():
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200 and ready.json()["app"] == "new_app", ready.text

    apps.patch_namespaced_deployment(
        "web", "saas", {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "t"}}}}}
    )
    seen_both = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = apps.read_namespaced_deployment("web", "saas").status
        now = pod_processes(core, "web")
        seen_both |= len(now) == 4 and all(alive(pid) for pid, _ in before.values())  # old ones serve meanwhile
        if (status.updated_replicas, status.available_replicas, status.replicas) == (2, 2, 2) and not set(now) & set(
            before
        ):
            break
        time.sleep(0.1)
    assert seen_both, "the old pods were ended before the new ones were ready"
    after = pod_processes(core, "web")
    assert not set(after) & set(before) and len(after) == 2
    time.sleep(0.5)
    assert not any(alive(pid) for pid, _ in before.values())  # the old processes are gone

    name, (pid, _) = next(iter(after.items()))
    os.kill(pid, signal.SIGKILL)
    deadline, unready = time.monotonic() + 30, False
    while time.monotonic() < deadline:
        status = apps.read_namespaced_deployment("web", "saas").status
        unready |= (status.ready_replicas or 0) < 2
        pod = core.read_namespaced_pod(name, "saas")
        if pod.status.container_statuses[0].restart_count == 1 and (status.ready_replicas or 0) == 2:
            break
        time.sleep(0.1)
    assert unready and pod.status.container_statuses[0].restart_count == 1
    assert alive(pod_processes(core, "web")[name][0])
