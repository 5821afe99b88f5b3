"""The Kubernetes API stand-in (stand.kube_api) as a stand service, with a kubeconfig for it and the
application's namespace and deployments, as CI/CD would have created them in the new cluster.
"""

from __future__ import annotations

import json

import httpx

from stand.core import Stand, conn_json
from stand.services.web import UvicornApp

NAMESPACE = "saas"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DEPLOYMENTS = {
    "web": (2, f"{REGISTRY}/saas-web:2026.11.20"),
    "sidekiq": (1, f"{REGISTRY}/saas-web:2026.11.20"),
    "pgbouncer": (2, f"{REGISTRY}/pgbouncer:1.23"),
}


def deployment(name: str, replicas: int, image: str) -> dict:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}},
        },
    }


class KubeApi(UvicornApp):
    def __init__(self, port_offset: int = 11, delay_s: float = 1.0):
        super().__init__(
            "kube_api",
            "stand.kube_api:app",
            port_offset,
            "kube_stand",
            lambda stand: {"KUBE_STANDIN_DELAY": str(delay_s)},
        )

    def kubeconfig(self, stand: Stand):
        return stand.dir / "kubeconfig"

    def up(self, stand: Stand) -> None:
        if self.healthy(stand):
            return
        super().up(stand)
        self.kubeconfig(stand).write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "stand",
                    "clusters": [{"name": "stand", "cluster": {"server": self.url(stand)}}],
                    "users": [{"name": "stand", "user": {"token": "stand-in-accepts-any-token"}}],
                    "contexts": [
                        {"name": "stand", "context": {"cluster": "stand", "user": "stand", "namespace": NAMESPACE}}
                    ],
                }
            )
        )
        with httpx.Client(base_url=self.url(stand)) as api:
            api.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}).raise_for_status()
            for name, (replicas, image) in DEPLOYMENTS.items():
                api.post(
                    f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", json=deployment(name, replicas, image)
                ).raise_for_status()

    def env(self, stand: Stand) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_KUBE_STAND": conn_json(
                conn_type="kubernetes", extra={"kube_config_path": str(self.kubeconfig(stand)), "namespace": NAMESPACE}
            )
        }
