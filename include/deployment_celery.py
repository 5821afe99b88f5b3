"""The deployment's Celery configuration (``[celery] celery_config_options``): Airflow's default, and
every module of the ``ferry`` package in Celery's ``imports``.

A Celery worker imports those once, before it forks its pool; each task's process is forked from the
pool and starts with them. Without it every task imports Ferry and the providers again (about 1.3 s of
CPU here, against 0.1 s to parse the D-day DAG once they are imported): between two tasks of the write
freeze, that was most of the wait.
"""

from __future__ import annotations

import pkgutil

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

import ferry

FERRY_MODULES = sorted(m.name for m in pkgutil.walk_packages(ferry.__path__, "ferry."))

CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), *FERRY_MODULES]}
