"""A Kubernetes API stand-in: a test double, not a cluster.

A real API server cannot run on the machines Ferry is developed on, so the stand serves what
Ferry uses of the Kubernetes API over HTTP, on the real wire protocol, for the official client
and Airflow's KubernetesHook: apps/v1 Deployments (list, get, create, replace, patch, delete, the
scale subresource) and core/v1 namespaces, pods, services and configmaps. Errors come back as Status objects
(404 NotFound, 409 AlreadyExists, 422 Invalid). Patches: JSON merge patch and strategic merge
patch, the latter applied as a merge patch (lists replaced), which is all Ferry sends.

Its pods are real: the kubelet (``stand.kubelet``) runs each deployment's replicas as local processes, ready once
their readiness probe passes (after ``KUBE_STANDIN_DELAY`` seconds by default, the stand's profile); a deployment's
status counts them, so scaling, a rollout restart and "ready" take what they take. A Service
(``KUBE_STANDIN_SERVICES``) is a loopback port sending each connection to a ready pod of its deployment. A deployment annotated
``stand.ferry/stuck: "true"`` has its probes fail: a failure a test asks for.
Run: ``uvicorn stand.kube_api:app``; ``docker-compose.yaml`` uses k3s for a real API server.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from stand.kubelet import Kubelet, start_services

DELAY_S = float(os.environ.get("KUBE_STANDIN_DELAY", "1.0"))
CORE_KINDS = {"pods": "Pod", "services": "Service", "configmaps": "ConfigMap"}
_lock = threading.Lock()
_version = [1]
namespaces: dict[str, dict[str, Any]] = {}
objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind plural, namespace, name) -> object
kubelet: Kubelet | None = None  # runs the pods (started with the app)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, name: str = "", kind: str = "") -> JSONResponse:
    return JSONResponse(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": {"name": name, "kind": kind},
            "code": code,
        },
        status_code=code,
    )


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def stamp(obj: dict[str, Any], kind: str, api_version: str, namespace: str | None) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", now())
    if namespace:
        meta["namespace"] = namespace
    with _lock:
        _version[0] += 1
        meta["resourceVersion"] = str(_version[0])
    obj["kind"], obj["apiVersion"] = kind, api_version
    return obj


def invalid(obj: dict[str, Any], kind: str) -> str | None:
    if not obj.get("metadata", {}).get("name"):
        return "metadata.name: Required value"
    if kind == "Deployment":
        replicas = obj.get("spec", {}).get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            return f"spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
        if not obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers"):
            return "spec.template.spec.containers: Required value"
    return None


# Deployments ---------------------------------------------------------------------------------


def template_hash(deployment: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(deployment["spec"]["template"], sort_keys=True).encode()).hexdigest()[:10]


def deployments_now() -> dict[tuple[str, str], dict[str, Any]]:
    """What the kubelet runs: each deployment's wanted replicas, its template (hashed), probe and stuck flag."""
    found = {}
    for (kind, ns, name), d in list(objects.items()):
        if kind != "deployments":
            continue
        template = d["spec"]["template"]
        probe = (template["spec"].get("containers") or [{}])[0].get("readinessProbe") or {}
        found[(ns, name)] = {
            "replicas": d["spec"].get("replicas", 1),
            "hash": template_hash(d),
            "labels": dict(template.get("metadata", {}).get("labels", {})),
            "annotations": dict(template.get("metadata", {}).get("annotations", {})),
            "spec": template["spec"],
            "probe": probe.get("httpGet", {}).get("path"),
            "initial_delay_s": probe.get("initialDelaySeconds"),
            "stuck": d["metadata"].get("annotations", {}).get("stand.ferry/stuck") == "true",
        }
    return found


def converged(deployment: dict[str, Any]) -> dict[str, Any]:
    """The deployment with its status as the controller reports it now: from its pods, real processes the kubelet
    runs (stand.kubelet), counted ready when their readiness probe passes."""
    ns, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    pods = kubelet.pods_of_deployment(ns, name) if kubelet is not None else []
    wanted, digest = deployment["spec"].get("replicas", 1), template_hash(deployment)
    updated = [p for p in pods if p.template_hash == digest]
    ready = [p for p in pods if p.ready]
    done = len(updated) == wanted and len(pods) == wanted and len(ready) == wanted
    deployment["status"] = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": len(pods),
        "updatedReplicas": len(updated),
        "readyReplicas": len(ready),
        "availableReplicas": len(ready),
        "unavailableReplicas": max(0, wanted - len(ready)),
        "conditions": [
            {"type": "Available", "status": "True" if len(ready) >= wanted else "False"},
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
            },
        ],
    }
    return deployment


def public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def save_deployment(ns: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    if old is None or old["spec"] != obj["spec"]:
        obj["metadata"]["generation"] = (old["metadata"]["generation"] if old else 0) + 1
    else:
        obj["metadata"]["generation"] = old["metadata"]["generation"]
    if old is not None:
        if "status" in old:
            obj["status"] = old["status"]
        obj["metadata"]["uid"] = old["metadata"]["uid"]
        obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
    objects[("deployments", ns, obj["metadata"]["name"])] = stamp(obj, "Deployment", "apps/v1", ns)
    return converged(obj)


def pods_of(ns: str) -> list[dict[str, Any]]:
    """The pods of the deployments of ``ns``: the kubelet's processes, ready or not."""
    pods = []
    for (kind, d_ns, name), deployment in list(objects.items()):
        if kind != "deployments" or d_ns != ns:
            continue
        annotations = deployment["spec"]["template"].get("metadata", {}).get("annotations", {})
        pods += [p.as_object(annotations) for p in (kubelet.pods_of_deployment(ns, name) if kubelet else [])]
    return pods


def matches(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj["metadata"].get("labels", {})
    return all(labels.get(k) == v for k, v in (part.split("=", 1) for part in selector.split(",")))


async def body_of(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw else {}


async def deployments(request: Request) -> JSONResponse:
    ns, name = request.path_params["ns"], request.path_params.get("name")
    sub = request.path_params.get("sub")
    if ns not in namespaces:
        return status(404, "NotFound", f'namespaces "{ns}" not found', ns, "namespaces")
    key = ("deployments", ns, name)
    if name is None:
        if request.method == "GET":
            items = [public(converged(d)) for (k, d_ns, _), d in objects.items() if k == "deployments" and d_ns == ns]
            return JSONResponse({"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {}, "items": items})
        obj = await body_of(request)
        if (problem := invalid(obj, "Deployment")) is not None:
            return status(
                422,
                "Invalid",
                f"Deployment is invalid: {problem}",
                obj.get("metadata", {}).get("name", ""),
                "deployments",
            )
        if ("deployments", ns, obj["metadata"]["name"]) in objects:
            return status(
                409,
                "AlreadyExists",
                f'deployments.apps "{obj["metadata"]["name"]}" already exists',
                obj["metadata"]["name"],
                "deployments",
            )
        return JSONResponse(public(save_deployment(ns, obj, None)), status_code=201)
    old = objects.get(key)
    if old is None:
        return status(404, "NotFound", f'deployments.apps "{name}" not found', name, "deployments")
    if request.method == "DELETE":
        del objects[key]
        return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}})
    if sub == "scale":
        if request.method == "GET":
            return JSONResponse(scale_of(converged(old)))
        change = await body_of(request)
        wanted = merge(scale_of(old), change) if request.method == "PATCH" else change
        replicas = wanted.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            return status(
                422, "Invalid", f"Scale is invalid: spec.replicas: Invalid value: {replicas}", name, "deployments"
            )
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = replicas
        return JSONResponse(scale_of(save_deployment(ns, new, old)))
    if request.method == "GET":
        return JSONResponse(public(converged(old)))
    change = await body_of(request)
    new = merge(public(copy.deepcopy(old)), change) if request.method == "PATCH" else change
    if (problem := invalid(new, "Deployment")) is not None:
        return status(422, "Invalid", f"Deployment is invalid: {problem}", name, "deployments")
    return JSONResponse(public(save_deployment(ns, new, old)))


def scale_of(deployment: dict[str, Any]) -> dict[str, Any]:
    meta = deployment["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "resourceVersion": meta["resourceVersion"]},
        "spec": {"replicas": deployment["spec"].get("replicas", 1)},
        "status": {"replicas": deployment.get("status", {}).get("replicas", 0)},
    }


# Core v1 -------------------------------------------------------------------------------------


async def namespace_routes(request: Request) -> JSONResponse:
    name = request.path_params.get("name")
    if name is None:
        if request.method == "GET":
            return JSONResponse(
                {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": list(namespaces.values())}
            )
        obj = await body_of(request)
        if (problem := invalid(obj, "Namespace")) is not None:
            return status(422, "Invalid", f"Namespace is invalid: {problem}", "", "namespaces")
        if obj["metadata"]["name"] in namespaces:
            return status(
                409,
                "AlreadyExists",
                f'namespaces "{obj["metadata"]["name"]}" already exists',
                obj["metadata"]["name"],
                "namespaces",
            )
        obj.setdefault("status", {"phase": "Active"})
        namespaces[obj["metadata"]["name"]] = stamp(obj, "Namespace", "v1", None)
        return JSONResponse(obj, status_code=201)
    if name not in namespaces:
        return status(404, "NotFound", f'namespaces "{name}" not found', name, "namespaces")
    if request.method == "DELETE":
        del namespaces[name]
        return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Success"})
    return JSONResponse(namespaces[name])


async def core_routes(request: Request) -> JSONResponse:
    ns, plural, name = request.path_params["ns"], request.path_params["plural"], request.path_params.get("name")
    if plural not in CORE_KINDS:
        return status(404, "NotFound", f"the server could not find the requested resource ({plural})")
    if ns not in namespaces:
        return status(404, "NotFound", f'namespaces "{ns}" not found', ns, "namespaces")
    kind = CORE_KINDS[plural]
    if plural == "pods" and request.method == "GET":
        pods = [p for p in pods_of(ns) if matches(p, request.query_params.get("labelSelector"))]
        if name is None:
            return JSONResponse({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods})
        found = [p for p in pods if p["metadata"]["name"] == name]
        return JSONResponse(found[0]) if found else status(404, "NotFound", f'pods "{name}" not found', name, "pods")
    if name is None:
        if request.method == "GET":
            items = [
                o
                for (k, o_ns, _), o in objects.items()
                if k == plural and o_ns == ns and matches(o, request.query_params.get("labelSelector"))
            ]
            return JSONResponse({"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": items})
        obj = await body_of(request)
        if (problem := invalid(obj, kind)) is not None:
            return status(422, "Invalid", f"{kind} is invalid: {problem}", "", plural)
        key = (plural, ns, obj["metadata"]["name"])
        if key in objects:
            return status(
                409,
                "AlreadyExists",
                f'{plural} "{obj["metadata"]["name"]}" already exists',
                obj["metadata"]["name"],
                plural,
            )
        objects[key] = stamp(obj, kind, "v1", ns)
        return JSONResponse(obj, status_code=201)
    key = (plural, ns, name)
    if key not in objects:
        return status(404, "NotFound", f'{plural} "{name}" not found', name, plural)
    if request.method == "GET":
        return JSONResponse(objects[key])
    if request.method == "DELETE":
        del objects[key]
        return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Success"})
    change = await body_of(request)
    objects[key] = stamp(merge(objects[key], change) if request.method == "PATCH" else change, kind, "v1", ns)
    return JSONResponse(objects[key])


async def version(request: Request) -> JSONResponse:
    return JSONResponse(
        {  # every field a real API server returns (the client's VersionInfo requires them)
            "major": "1",
            "minor": "30",
            "gitVersion": "v1.30.0-ferry-standin",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.22.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
    global kubelet
    kubelet = Kubelet(DELAY_S, deployments_now).start()
    services = await start_services(kubelet)  # the Services' ports: to the ready pods
    try:
        yield
    finally:
        for service in services:
            await service.stop()
        kubelet.shutdown()  # every pod's process ends with the stand-in


VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
app = Starlette(
    lifespan=lifespan,
    routes=[
        Route("/version", version),
        Route("/healthz", healthz),
        Route("/api/v1/namespaces", namespace_routes, methods=VERBS),
        Route("/api/v1/namespaces/{name}", namespace_routes, methods=VERBS),
        Route("/api/v1/namespaces/{ns}/{plural}", core_routes, methods=VERBS),
        Route("/api/v1/namespaces/{ns}/{plural}/{name}", core_routes, methods=VERBS),
        Route("/apis/apps/v1/namespaces/{ns}/deployments", deployments, methods=VERBS),
        Route("/apis/apps/v1/namespaces/{ns}/deployments/{name}", deployments, methods=VERBS),
        Route("/apis/apps/v1/namespaces/{ns}/deployments/{name}/{sub}", deployments, methods=VERBS),
    ],
)
