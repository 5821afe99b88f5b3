"""The Kubernetes API stand-in (stand.kube_api) as a stand service, with a kubeconfig for it and the
application's namespace and deployments, as CI/CD would have created them in the new cluster.
"""

from __future__ import annotations

import json

from kubernetes.config import new_client_from_config

from stand import profile
from stand.core import Stand, conn_json
from stand.seeding import NAMESPACE, deployment, seed_kubernetes
from stand.services.web import UvicornApp

__all__ = ["KubeApi", "deployment"]


class KubeApi(UvicornApp):
    def __init__(self, port_offset: int = 11):
        # A deployment converges (its replicas ready) as long after a change as the stand's profile says.
        super().__init__(
            "kube_api",
            "stand.kube_api:app",
            port_offset,
            "kube_stand",
            lambda stand: {"KUBE_STANDIN_DELAY": str(profile.current()[1]["kube_ready_s"])},
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
        with new_client_from_config(str(self.kubeconfig(stand))) as api:
            seed_kubernetes(api)

    def env(self, stand: Stand) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_KUBE_STAND": conn_json(
                conn_type="kubernetes", extra={"kube_config_path": str(self.kubeconfig(stand)), "namespace": NAMESPACE}
            )
        }
