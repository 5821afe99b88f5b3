"""The Kubernetes API stand-in (stand.kube_api) as a stand service, with a kubeconfig for it and the
application's namespace and deployments, as CI/CD would have created them in the new cluster.
"""

from __future__ import annotations

import json

from kubernetes.config import new_client_from_config

from stand import profile
from stand.core import Stand, conn_json
from stand.seeding import NAMESPACE, deployment, seed_kubernetes
from stand.services.pgbouncer import NewPgBouncer
from stand.services.web import UvicornApp, app_env

__all__ = ["KubeApi", "deployment"]


class KubeApi(UvicornApp):
    def __init__(self, port_offset: int = 11):
        # Each replica is a process (stand.kubelet), ready as long after its start as the stand's profile says and
        # once its probe passes: the web deployment's pods are the new application itself, through the target's
        # PgBouncer, ready when their database answers.
        super().__init__("kube_api", "stand.kube_api:app", port_offset, "kube_stand", self.standin_env)

    @staticmethod
    def standin_env(stand: Stand) -> dict[str, str]:
        web = {"app": "stand.apps:app", "probe": "/readyz", "env": app_env("new_app_pods", NewPgBouncer().dsn)(stand)}
        return {
            "KUBE_STANDIN_DELAY": str(profile.current()[1]["kube_ready_s"]),
            "KUBE_STANDIN_PODS": json.dumps({"web": web}),
        }

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
