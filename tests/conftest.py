"""Test settings: a throwaway AIRFLOW_HOME and Airflow's settings, set before Airflow is imported."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ferry-test-airflow-"))

# Nothing from a developer's shell (a sourced stand env, a plan) leaks into the tests.
for name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AWS_", "FERRY_"))]:
    del os.environ[name]
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="True",
    AWS_EC2_METADATA_DISABLED="true",
    FERRY_REPORT_DIR=str(AIRFLOW_HOME / "reports"),
    # The product's DAGs, and DAGs that exist only for the tests, each a bundle dag.test() can sync.
    AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=json.dumps(
        [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path)},
            }
            for name, path in (("dags-folder", ROOT / "dags"), ("ferry-tests", ROOT / "tests" / "integration" / "dags"))
        ]
    ),
)


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata database for the session."""
    from airflow.utils import db

    db.resetdb()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dag_folder() -> Path:
    return ROOT / "dags"
