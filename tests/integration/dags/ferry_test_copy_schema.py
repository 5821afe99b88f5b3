"""
# ferry_test_copy_schema (tests only)

The schema copy alone, so a test can run it against a target in each state it must handle.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from ferry.operators.schema import ReplicationCopySchemaOperator

with DAG(
    dag_id="ferry_test_copy_schema",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["ferry", "test"],
    doc_md=__doc__,
):
    ReplicationCopySchemaOperator(task_id="copy_schema", retries=0)
