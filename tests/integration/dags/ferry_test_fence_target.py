"""
# ferry_test_fence_target (tests only)

The way back's fence on the target (ferry_rollback_after_cutover's `fence_target`), alone: the same fence as the
source's on D-day, partitions, missing roles and the check after install included.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from ferry.operators.fence import ReplicationFenceTargetOperator

with DAG(
    dag_id="ferry_test_fence_target",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["ferry", "test"],
    doc_md=__doc__,
):
    ReplicationFenceTargetOperator(task_id="fence_target", retries=0)
