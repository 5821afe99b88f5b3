"""The webhook recorder, the apps and replay, on the stand: nothing acknowledged is lost, nothing sent twice."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest

from ferry.hooks.webhooks import read_events, recorded_events
from stand.services import SERVICES
from tests.integration.conftest import TEST_DAGS, aws, run_dag, twice

RECORDER = next(s for s in SERVICES if s.name == "recorder")


def url(stand, offset: int) -> str:
    return f"http://127.0.0.1:{stand.port(offset)}"


def received(stand, app: str) -> list[dict]:
    path = stand.dir / "apps" / f"{app}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def empty_recorder_bucket(s3) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="ferry-stand-webhooks"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket="ferry-stand-webhooks", Key=obj["Key"])


@pytest.fixture
def webhooks(stand, new_app_serving):
    """An empty recorder bucket and apps that have received nothing; the bucket emptied again afterwards (a
    later test's rollback would otherwise replay what this one left to the old app)."""
    s3 = aws(stand, "s3")
    empty_recorder_bucket(s3)
    for app in ("old_app", "new_app"):
        (stand.dir / "apps" / f"{app}.jsonl").unlink(missing_ok=True)
    yield s3
    empty_recorder_bucket(s3)


def send(stand, n: int, start: int = 0) -> list[int]:
    """POST n webhooks as a billing provider would; return the recorder's sequence for each."""
    seqs = []
    with httpx.Client(base_url=url(stand, 7)) as client:
        for i in range(start, start + n):
            response = client.post(
                f"/webhooks/stripe?attempt={i}", json={"id": f"evt_{i}"}, headers={"Stripe-Signature": f"t=1,v1=sig{i}"}
            )
            assert response.status_code == 202, response.text
            seqs.append(response.json()["recorded"])
    return seqs


def providers_at_once(stand, tag: str, providers: int = 20, each: int = 25) -> list[int]:
    """``providers`` providers posting ``each`` webhooks at once, each its next once the last got its 202; the
    sequences acknowledged."""
    acked: list[int] = []

    def provider(n: int) -> None:
        with httpx.Client(base_url=url(stand, 7), timeout=30) as client:
            for i in range(each):
                response = client.post("/webhooks/stripe", json={"id": f"{tag}{n}-{i}"})
                assert response.status_code == 202, response.text
                acked.append(response.json()["recorded"])

    threads = [threading.Thread(target=provider, args=(n,)) for n in range(providers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked


def replay(destination: str = "new") -> str:
    return run_dag(TEST_DAGS, "ferry_test_webhooks_replay", {"destination": destination}).state


def test_recorder_stores_before_it_acknowledges_and_refuses_oversize(stand, webhooks):
    seqs = send(stand, 5)
    keys = [o["Key"] for o in webhooks.list_objects_v2(Bucket="ferry-stand-webhooks", Prefix="events/")["Contents"]]
    assert len(keys) == 5 and seqs == sorted(seqs)  # one at a time: each stored alone, at once
    [recorded] = read_events(webhooks, "ferry-stand-webhooks", sorted(keys)[2])
    event = recorded.event
    assert recorded.id == f"{seqs[2]:020d}-{sorted(keys)[2].split('-', 1)[1].removesuffix('.jsonl')}.json"
    assert event["seq"] == seqs[2] and event["path"] == "/webhooks/stripe" and event["query"] == "attempt=2"
    assert json.loads(base64.b64decode(event["body_b64"])) == {"id": "evt_2"}
    assert ["stripe-signature", "t=1,v1=sig2"] in event["headers"]
    assert httpx.post(url(stand, 7) + "/webhooks/big", content=b"x" * (1024 * 1024 + 1)).status_code == 413
    assert httpx.get(url(stand, 7) + "/healthz").json()["status"] == "ok"


def test_recorder_answers_503_while_s3_refuses_and_stores_once_it_accepts(stand, webhooks):
    """Not stored means not acknowledged: while the bucket is gone each put is refused (S3's 404), so the
    provider gets a 503 (and retries); once the bucket is back the same event is stored and acknowledged."""
    webhooks.delete_bucket(Bucket="ferry-stand-webhooks")
    try:
        refused = httpx.post(url(stand, 7) + "/webhooks/stripe", json={"id": "evt_refused"})
        assert refused.status_code == 503, refused.text
        assert refused.json() == {"error": "not stored (PutFailed); retry"}
        assert "Signature" not in refused.text and "AKIA" not in refused.text
    finally:
        webhooks.create_bucket(Bucket="ferry-stand-webhooks")
    assert "Contents" not in webhooks.list_objects_v2(Bucket="ferry-stand-webhooks", Prefix="events/")
    [seq] = send(stand, 1)
    [recorded] = recorded_events(webhooks, "ferry-stand-webhooks", "events/")
    assert recorded.event["seq"] == seq


def test_events_arriving_together_are_stored_together_each_acknowledged_once_stored(stand, webhooks):
    """Twenty providers at once: events that wait while others are stored share one object (group
    commit); every acknowledged sequence is stored exactly once, and the replay sends them in order."""
    acked = providers_at_once(stand, "g")
    keys = [o["Key"] for o in webhooks.list_objects_v2(Bucket="ferry-stand-webhooks", Prefix="events/")["Contents"]]
    stored = [r.event["seq"] for key in keys for r in read_events(webhooks, "ferry-stand-webhooks", key)]
    assert sorted(stored) == sorted(acked) and len(acked) == 500
    assert len(keys) < len(acked), "no two events shared an object"
    assert replay() == "success"
    assert [e["replay"] for e in received(stand, "new_app")] == [str(seq) for seq in sorted(acked)]


def test_events_stored_while_the_replay_sends_are_sent_by_a_further_pass(stand, webhooks):
    """A provider whose DNS cache still points at the recorder after the switch: events stored once the replay
    has read the bucket (it is already sending) are sent by a further pass of the same task, each once, in
    order after the others."""
    acked = providers_at_once(stand, "p")
    late: list[int] = []

    def straggler() -> None:  # starts once the replay delivers: the bucket was read before these are stored
        deadline = time.monotonic() + 300
        while not received(stand, "new_app") and time.monotonic() < deadline:
            time.sleep(0.01)
        late.extend(send(stand, 10, start=1000))

    thread = threading.Thread(target=straggler)
    thread.start()
    assert replay() == "success"
    thread.join()
    got = [e["replay"] for e in received(stand, "new_app")]
    assert len(late) == 10 and got == [str(seq) for seq in sorted(acked + late)], (len(got), len(acked), late)


def test_replay_in_order_once_even_when_run_twice(stand, webhooks):
    send(stand, 30)
    assert replay() == "success"
    assert replay() == "success"
    got = received(stand, "new_app")
    assert [json.loads(base64.b64decode(e["body_b64"]))["id"] for e in got] == [f"evt_{i}" for i in range(30)]
    assert [e["signature"] for e in got] == [f"t=1,v1=sig{i}" for i in range(30)]
    assert all(e["replay"] for e in got)
    assert received(stand, "old_app") == []


def test_replay_keeps_the_order_per_customer_and_sends_customers_in_parallel(stand, webhooks, capfd):
    """Events about three customers, interleaved, and events about none: each customer's events (and the
    keyless ones) arrive in the order they were received; the replay ran their keys side by side."""
    with httpx.Client(base_url=url(stand, 7)) as client:
        for i in range(40):
            body = {"id": f"evt_{i}", "data": {"object": {"customer": f"cus_{i % 3}"}}} if i % 4 else {"id": f"evt_{i}"}
            assert client.post("/webhooks/stripe", json=body).status_code == 202
    capfd.readouterr()
    assert replay() == "success"
    assert "40 to send, 4 ordering key(s), 32 at once" in "".join(capfd.readouterr())
    bodies = [json.loads(base64.b64decode(e["body_b64"])) for e in received(stand, "new_app")]
    assert sorted(b["id"] for b in bodies) == sorted(f"evt_{i}" for i in range(40))
    for customer in ("cus_0", "cus_1", "cus_2", None):
        ids = [int(b["id"][4:]) for b in bodies if b.get("data", {}).get("object", {}).get("customer") == customer]
        assert ids == sorted(ids) and ids, (customer, ids)


def test_replay_retries_5xx_and_stops_on_4xx_keeping_the_order(stand, webhooks, capfd):
    send(stand, 3)
    httpx.post(url(stand, 9) + "/_fail", json={"status": 503, "count": 2})
    assert replay() == "success"  # two 503s, retried
    assert len(received(stand, "new_app")) == 3

    send(stand, 3, start=3)
    httpx.post(url(stand, 9) + "/_fail", json={"status": 422, "count": 1})
    capfd.readouterr()
    assert replay() == "failed"
    out = "".join(capfd.readouterr())
    assert "HTTP 422: the application refused it" in out
    assert "recorded 6 = delivered 3 (now 0) + failed 1 + pending 2" in out
    assert len(received(stand, "new_app")) == 3  # nothing after the refused one was sent out of order
    assert replay() == "success"
    ids = [json.loads(base64.b64decode(e["body_b64"]))["id"] for e in received(stand, "new_app")]
    assert ids == [f"evt_{i}" for i in range(6)]


def test_rollback_replays_to_the_old_app(stand, webhooks):
    send(stand, 4)
    assert replay("old") == "success"
    assert len(received(stand, "old_app")) == 4 and received(stand, "new_app") == []


def test_recorder_killed_and_restarted_under_load_loses_nothing_acknowledged(stand, webhooks):
    acked: list[str] = []
    stop = threading.Event()

    def provider(n: int) -> None:
        i = 0
        with httpx.Client(base_url=url(stand, 7), timeout=5) as client:
            while not stop.is_set():
                event_id = f"p{n}-{i}"
                try:
                    if client.post("/webhooks/stripe", json={"id": event_id}).status_code == 202:
                        acked.append(event_id)
                        i += 1
                except httpx.TransportError:
                    time.sleep(0.05)  # a provider retries the same event later

    threads = [threading.Thread(target=provider, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    time.sleep(1)
    stand.stop_process("recorder", timeout=0)  # SIGTERM then SIGKILL at once: a crash
    time.sleep(0.5)
    RECORDER.up(stand)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    assert replay() == "success"
    got = received(stand, "new_app")
    delivered = {json.loads(base64.b64decode(e["body_b64"]))["id"] for e in got}
    assert len(acked) > 50
    assert set(acked) <= delivered  # every acknowledged event reached the app
    # Each recorded event exactly once (a provider resending after a cut connection is a new recording).
    assert len({e["replay"] for e in got}) == len(got)


def test_recorder_deployed_to_the_cluster_each_twice_then_removed(stand):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    apps = KubernetesHook(conn_id="kube_stand").apps_v1_client
    assert twice("ferry_test_recorder_deploy") == 2  # the deployment and the service, once
    recorder = apps.read_namespaced_deployment("webhook-recorder", "saas")
    assert recorder.status.available_replicas == 2  # it waited for the rollout
    env = {e.name: e.value for e in recorder.spec.template.spec.containers[0].env}
    assert env["RECORDER_BUCKET"] == "ferry-stand-webhooks"
    assert twice("ferry_test_recorder_remove") == 2
    assert "webhook-recorder" not in [d.metadata.name for d in apps.list_namespaced_deployment("saas").items]


def test_webhook_host_routed_to_the_recorder_then_to_the_new_app_then_restored(stand):
    from tests.integration.test_aws_side import records

    hooks = "hooks.stand.example.com."
    original = records(stand)
    assert twice("ferry_test_dns_route_webhooks") == 1
    assert records(stand)[hooks] == ("recorder-lb.stand.example.net", 60)
    assert records(stand)["app.stand.example.com."] == original["app.stand.example.com."]
    assert run_dag(TEST_DAGS, "ferry_test_dns_switch").state == "success"  # D-day: from the recorder to the new app
    assert records(stand)[hooks] == ("new-lb.stand.example.net", 60)
    assert twice("ferry_test_dns_restore") == 2
    assert records(stand) == original


REPLAY_SCRIPT = """
import sys, boto3
from ferry.hooks.webhooks import replay
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
replay(s3, "ferry-stand-webhooks", "events/", sys.argv[2], "new", timeout_s=10,
       order_key=["data.object.customer"], concurrency=16)
"""


def test_replay_killed_mid_way_then_run_again_delivers_each_event_once_per_key_in_order(stand, webhooks, tmp_path):
    """The replay's process SIGKILLed while it sends (a worker lost), then the task run again: every recorded
    event reaches the app; an event is sent a second time only when the kill fell between its 2xx and its
    delivery marker, so at most one per key in flight (16), each right after its first copy, so that each
    customer still sees its events in order; the app tells a repeat by its X-Ferry-Replay id."""
    import os
    import signal
    import subprocess
    import sys

    def provider(n: int) -> None:
        with httpx.Client(base_url=url(stand, 7), timeout=30) as client:
            for i in range(50):
                body = {"id": f"k{n}-{i}", "data": {"object": {"customer": f"cus_{(n * 50 + i) % 40}"}}}
                assert client.post("/webhooks/stripe", json=body).status_code == 202

    threads = [threading.Thread(target=provider, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", REPLAY_SCRIPT, url(stand, 5), url(stand, 9)], env=env)
    deadline = time.monotonic() + 120
    while len(received(stand, "new_app")) < 250:
        assert proc.poll() is None, "the replay ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = len(received(stand, "new_app"))
    assert 250 <= first < 1000
    assert replay() == "success"
    got = received(stand, "new_app")
    seqs = [int(e["replay"]) for e in got]
    assert len(set(seqs)) == 1000  # every recorded event delivered
    repeats = len(seqs) - len(set(seqs))
    assert repeats <= 16, repeats  # at most the events in flight when it was killed, one per key
    by_key: dict[str, list[int]] = {}
    for e in got:
        by_key.setdefault(json.loads(base64.b64decode(e["body_b64"]))["data"]["object"]["customer"], []).append(
            int(e["replay"])
        )
    for key, order in by_key.items():
        once = [s for i, s in enumerate(order) if i == 0 or s != order[i - 1]]  # a repeat comes right after
        assert once == sorted(set(order)), key
    print(f"killed after {first} deliveries; {repeats} event(s) sent twice")
