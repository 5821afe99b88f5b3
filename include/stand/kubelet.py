"""The Kubernetes stand-in's kubelet: each deployment's replicas run as real local processes with a readiness probe.

A container's image cannot run here, so a pod's process is what the stand says (``KUBE_STANDIN_PODS``, JSON: a
deployment's name -> ``{"app": "<module:ASGI app>", "probe": "/readyz", "env": {...}}``): the stand's web
deployment runs the new application itself (``stand.apps:app``, through the target's PgBouncer, ready once its
database answers); any other deployment runs ``stand.pod`` (a process answering its probe). The environment comes
from the stand, never from the API objects (a DSN holds a password).

A pod is ready once its process has run for the readiness probe's ``initialDelaySeconds`` (default
``KUBE_STANDIN_DELAY``, the stand's profile: image pull, start, first probes) and then answers its probe with a 2xx;
it is probed again every ``PROBE_PERIOD_S``, and a process that exits is replaced (its restart counted). A rollout
(a new pod template) starts the new pods beside the old ones and ends the old ones once every new one is ready, as
``maxSurge: 100%`` would; scaling down ends the newest pods first. A deployment annotated ``stand.ferry/stuck:
"true"`` has every probe fail: a failure a test asks for.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROBE_PERIOD_S = 0.5
TICK_S = 0.2
INCLUDE = Path(__file__).resolve().parent.parent  # include/: stand.* is importable from there


def _die_with_parent() -> None:
    """In the pod's process, before exec: it gets SIGTERM when the stand-in dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Pod:
    name: str
    namespace: str
    deployment: str
    template_hash: str
    labels: dict[str, str]
    spec: dict[str, Any]
    port: int
    probe: str
    initial_delay_s: float
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    ready: bool = False
    ready_since: str | None = None
    restarts: int = 0
    probed: float = 0.0

    def as_object(self, annotations: dict[str, str]) -> dict[str, Any]:
        alive = self.process.poll() is None
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": dict(self.labels),
                "annotations": dict(annotations) | {"stand.ferry/port": str(self.port)},
                "creationTimestamp": self.created,
                "uid": self.uid,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{self.deployment}-{self.template_hash}",
                        "uid": f"{self.namespace}-{self.deployment}-{self.template_hash}",
                        "controller": True,
                    }
                ],
            },
            "spec": self.spec,
            "status": {
                "phase": "Running" if alive else "Failed",
                "podIP": "127.0.0.1",
                "conditions": [
                    {"type": "Ready", "status": "True" if self.ready else "False"},
                    {"type": "ContainersReady", "status": "True" if self.ready else "False"},
                ],
                "containerStatuses": [
                    {
                        "name": (self.spec.get("containers") or [{}])[0].get("name", self.deployment),
                        "image": (self.spec.get("containers") or [{}])[0].get("image", ""),
                        "imageID": "",
                        "ready": self.ready,
                        "started": alive,
                        "restartCount": self.restarts,
                        "containerID": f"standin://{self.process.pid}",
                        "state": {"running": {"startedAt": self.created}} if alive else {"terminated": {"exitCode": 1}},
                    }
                ],
            },
        }


class Kubelet:
    """Runs the pods the deployments want, as processes, and says which are ready. Thread-safe: the API's handlers
    read :meth:`pods_of_deployment` while :meth:`run` reconciles in its own thread."""

    def __init__(
        self,
        default_delay_s: float,
        wanted: Callable[[], dict[tuple[str, str], dict[str, Any]]],
        config: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.default_delay_s, self.wanted = default_delay_s, wanted
        self.config = config if config is not None else json.loads(os.environ.get("KUBE_STANDIN_PODS", "{}"))
        self.pods: dict[tuple[str, str], list[Pod]] = {}  # (namespace, deployment) -> its pods, oldest first
        self.lock = threading.RLock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="kubelet", daemon=True)

    # What the API asks --------------------------------------------------------------------------------------

    def pods_of_deployment(self, namespace: str, name: str) -> list[Pod]:
        with self.lock:
            return list(self.pods.get((namespace, name), []))

    # The loop -----------------------------------------------------------------------------------------------

    def start(self) -> Kubelet:
        self.thread.start()
        return self

    def shutdown(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        with self.lock:
            for pods in self.pods.values():
                for pod in pods:
                    self.end(pod)
            self.pods.clear()

    def run(self) -> None:
        while not self.stop.wait(TICK_S):
            try:
                wanted = self.wanted()
                self.reconcile(wanted)
                self.probe_all(wanted)
            except Exception as err:  # noqa: BLE001 - a kubelet keeps going; say why in the stand-in's log
                print(f"kubelet: {type(err).__name__}: {err}", file=sys.stderr, flush=True)

    def reconcile(self, wanted: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Start and end processes so each deployment has its replicas of its current template."""
        with self.lock:
            for key in [k for k in self.pods if k not in wanted]:  # deleted deployments
                for pod in self.pods.pop(key):
                    self.end(pod)
            for key, d in wanted.items():
                pods = self.pods.setdefault(key, [])
                for pod in [p for p in pods if p.process.poll() is not None]:  # exited: the kubelet restarts it
                    pods[pods.index(pod)] = self.replace(pod)
                current = [p for p in pods if p.template_hash == d["hash"]]
                old = [p for p in pods if p.template_hash != d["hash"]]
                for _ in range(d["replicas"] - len(current)):
                    pod = self.start_pod(key[0], key[1], d)
                    pods.append(pod)
                    current.append(pod)
                for pod in current[d["replicas"] :][::-1]:  # scaled down: the newest go first
                    self.end(pod)
                    pods.remove(pod)
                    current.remove(pod)
                # A rollout ends the old pods once every new one is ready (maxSurge 100%); with no replica wanted, at
                # once.
                if old and all(p.ready for p in current):
                    for pod in old:
                        self.end(pod)
                        pods.remove(pod)

    def probe_all(self, wanted: dict[tuple[str, str], dict[str, Any]]) -> None:
        now = time.monotonic()
        for key, d in wanted.items():
            for pod in self.pods_of_deployment(*key):
                if now - pod.probed < PROBE_PERIOD_S:
                    continue
                pod.probed = now
                ready = (
                    not d["stuck"]
                    and pod.process.poll() is None
                    and now - pod.started >= pod.initial_delay_s
                    and self.probe(pod)
                )
                if ready and not pod.ready:
                    pod.ready_since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                pod.ready = ready

    @staticmethod
    def probe(pod: Pod) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{pod.port}{pod.probe}", timeout=1) as response:
                return 200 <= response.status < 400
        except (urllib.error.URLError, OSError):
            return False

    # Processes ----------------------------------------------------------------------------------------------

    def start_pod(self, namespace: str, name: str, d: dict[str, Any], restarts: int = 0, pod_name: str = "") -> Pod:
        run = self.config.get(name, {})
        port = free_port()
        if run.get("app"):
            argv = [
                sys.executable,
                "-m",
                "uvicorn",
                run["app"],
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        else:
            argv = [sys.executable, "-m", "stand.pod", str(port)]
        env = os.environ | {"PYTHONPATH": str(INCLUDE)} | {k: str(v) for k, v in run.get("env", {}).items()}
        env.pop("KUBE_STANDIN_PODS", None)  # a pod has its own environment, not the others'
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, cwd=str(INCLUDE)
        )
        probe = d["probe"] or run.get("probe") or "/healthz"
        delay = d["initial_delay_s"] if d["initial_delay_s"] is not None else self.default_delay_s
        return Pod(
            name=pod_name or f"{name}-{d['hash']}-{uuid.uuid4().hex[:5]}",
            namespace=namespace,
            deployment=name,
            template_hash=d["hash"],
            labels=d["labels"],
            spec=d["spec"],
            port=port,
            probe=probe,
            initial_delay_s=delay,
            process=process,
            restarts=restarts,
        )

    def replace(self, pod: Pod) -> Pod:
        """The container of ``pod`` exited: start it again under the same pod name, not ready until probed."""
        d = {
            "hash": pod.template_hash,
            "labels": pod.labels,
            "spec": pod.spec,
            "probe": pod.probe,
            "initial_delay_s": pod.initial_delay_s,
        }
        return self.start_pod(pod.namespace, pod.deployment, d, restarts=pod.restarts + 1, pod_name=pod.name)

    @staticmethod
    def end(pod: Pod, grace_s: float = 5) -> None:
        """SIGTERM, then SIGKILL after the grace period (a pod's terminationGracePeriodSeconds, shortened)."""
        pod.ready = False
        if pod.process.poll() is None:
            pod.process.terminate()
            try:
                pod.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pod.process.kill()
                pod.process.wait()


class ServiceProxy:
    """A Service of the stand-in behind its load balancer (the new app's address): a loopback port whose connections
    go, round robin, to the ready pods of one deployment. With no pod ready it answers HTTP 503, as an AWS load
    balancer with no healthy target does. ``KUBE_STANDIN_SERVICES``: JSON, ``"<namespace>/<deployment>"`` -> port."""

    NO_TARGET = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 39\r\n"
        b'Connection: close\r\n\r\n{"error": "no ready pod behind it yet"}'
    )

    def __init__(self, kubelet: Kubelet, namespace: str, deployment: str, port: int) -> None:
        self.kubelet, self.namespace, self.deployment, self.port = kubelet, namespace, deployment, port
        self.turn = 0
        self.server: Any = None

    async def start(self) -> ServiceProxy:
        import asyncio

        self.server = await asyncio.start_server(self.connect, "127.0.0.1", self.port)
        return self

    async def connect(self, reader: Any, writer: Any) -> None:
        import asyncio

        ready = [p for p in self.kubelet.pods_of_deployment(self.namespace, self.deployment) if p.ready]
        if not ready:
            try:  # the request's head read first: a client still writing would see a reset, not the answer
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=2)
                writer.write(self.NO_TARGET)
                await writer.drain()
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
                pass
            writer.close()
            return
        pod = ready[self.turn % len(ready)]
        self.turn += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", pod.port)
        except OSError:
            writer.close()
            return

        async def pipe(src: Any, dst: Any) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def start_services(kubelet: Kubelet) -> list[ServiceProxy]:
    """The Services the stand asks for (``KUBE_STANDIN_SERVICES``), listening."""
    wanted = json.loads(os.environ.get("KUBE_STANDIN_SERVICES", "{}"))
    found = []
    for where, port in wanted.items():
        namespace, deployment = where.split("/", 1)
        found.append(await ServiceProxy(kubelet, namespace, deployment, int(port)).start())
    return found
