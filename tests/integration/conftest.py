"""The stand the integration tests run against: its own folder and ports, small data, torn down after."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import psycopg
import pytest

from stand.control import down, up
from stand.core import Stand
from stand.services.postgres import PostgresPair

TEST_STAND = Stand(dir=Path("/tmp/ferry-stand-test"), port_base=55320, rows=20_000)


@pytest.fixture(scope="session")
def stand(airflow_db):
    """The test stand, up; its env (connections, plan) loaded into this process."""
    up(TEST_STAND)
    for line in TEST_STAND.env_file.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        os.environ[name] = shlex.split(value)[0]
    yield TEST_STAND
    down(TEST_STAND)


@pytest.fixture
def source(stand) -> psycopg.Connection:
    """A superuser connection to the stand's source database."""
    with PostgresPair().admin(stand, "source") as conn:
        yield conn


@pytest.fixture
def target(stand) -> psycopg.Connection:
    """A superuser connection to the stand's target database."""
    with PostgresPair().admin(stand, "target") as conn:
        yield conn


@pytest.fixture
def stand_secrets(stand) -> list[str]:
    return list(json.loads(stand.state_file.read_text())["secrets"].values())


def run_dag(dag_folder: Path, dag_id: str, conf: dict | None = None):
    """Run a DAG of ``dag_folder`` (a configured bundle: see tests/conftest.py) once with dag.test()."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_folder))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id].test(run_conf=conf)
