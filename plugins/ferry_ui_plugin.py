"""Ferry's page in the Airflow UI: the API server serves ``ferry.ui.app`` at ``/ferry``; the UI's navigation links to
it ("Ferry", shown inside the UI). Read only; the same login as the UI."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ferry.ui import app


class FerryPlugin(AirflowPlugin):
    name = "ferry"
    fastapi_apps = [{"app": app, "url_prefix": "/ferry", "name": "Ferry migration page"}]
    external_views = [
        {
            "name": "Ferry",
            "href": "ferry/",
            "destination": "nav",
            "url_route": "ferry",
            "nav_top_level": True,  # beside Browse and Admin, not under a Plugins menu
        }
    ]
