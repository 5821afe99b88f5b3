"""The Kubernetes API stand-in (stand.kube_api) as a stand service, with a kubeconfig for it and the
application's namespace and deployments, as CI/CD would have created them in the new cluster.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request

from kubernetes.config import new_client_from_config

from stand import profile
from stand.core import Stand, conn_json
from stand.seeding import NAMESPACE, deployment, seed_kubernetes
from stand.services.pgbouncer import NewPgBouncer
from stand.services.web import UvicornApp, app_env

__all__ = ["KubeApi", "deployment"]


NEW_APP_OFFSET = 9  # the new app's Service: its port, and the Airflow connection new_app


class KubeApi(UvicornApp):
    def __init__(self, port_offset: int = 11):
        # Each replica is a process (stand.kubelet), ready as long after its start as the stand's profile says and
        # once its probe passes. The web deployment's pods are the new application itself (through the target's
        # PgBouncer, ready when their database answers), reached through its Service: the new app's port.
        super().__init__("kube_api", "stand.kube_api:app", port_offset, "kube_stand", self.standin_env)

    @staticmethod
    def standin_env(stand: Stand) -> dict[str, str]:
        web = {"app": "stand.apps:app", "probe": "/readyz", "env": app_env("new_app", NewPgBouncer().dsn)(stand)}
        return {
            "KUBE_STANDIN_DELAY": str(profile.current()[1]["kube_ready_s"]),
            "KUBE_STANDIN_PODS": json.dumps({"web": web}),
            "KUBE_STANDIN_SERVICES": json.dumps({f"{NAMESPACE}/web": stand.port(NEW_APP_OFFSET)}),
        }

    def new_app_url(self, stand: Stand) -> str:
        return f"http://127.0.0.1:{stand.port(NEW_APP_OFFSET)}"

    def wait_for_new_app(self, stand: Stand, timeout_s: float = 60) -> None:
        """Until the new app answers through its Service (its pods started and ready)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.new_app_url(stand) + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the new app's pods did not become ready within {timeout_s:.0f} s")
            time.sleep(0.2)

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
        self.wait_for_new_app(stand)

    def env(self, stand: Stand) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_NEW_APP": conn_json(
                conn_type="http", host="127.0.0.1", port=stand.port(NEW_APP_OFFSET), schema="http"
            ),
            "AIRFLOW_CONN_KUBE_STAND": conn_json(
                conn_type="kubernetes", extra={"kube_config_path": str(self.kubeconfig(stand)), "namespace": NAMESPACE}
            ),
        }
