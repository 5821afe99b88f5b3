"""
# ferry_test_compare_spread (tests only)

D-day's per-table comparison (`compare_data`, ReplicationCompareTableOperator) mapped over the tables
the run's conf names (`{"tables": [...]}`): the deployment tests run it on two Celery workers and read
which worker ran each table. Lives under tests/ so the product's DAG folder stays the runbook's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from ferry.operators.compare import ReplicationCompareTableOperator

with DAG(
    dag_id="ferry_test_compare_spread",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"tables": []},
    default_args={"retries": 2, "retry_delay": timedelta(seconds=3)},  # as every Ferry DAG retries
    doc_md=__doc__,
    tags=["ferry", "tests"],
):

    @task
    def tables(**context) -> list[str]:
        return list(context["params"]["tables"])

    ReplicationCompareTableOperator.partial(task_id="compare_data").expand(table=tables())
