"""
# ferry_test_drop_subscription (tests only)

Drop the subscription (detaching its slot when the source does not answer), then drop a slot the
ledger says was left on the source. Two DAGs so a test can run them with the source down, then up.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from ferry.operators.replication import ReplicationDropOrphanSlotOperator, ReplicationDropSubscriptionOperator

for dag_id, operator in (
    ("ferry_test_drop_subscription", ReplicationDropSubscriptionOperator),
    ("ferry_test_drop_orphan_slot", ReplicationDropOrphanSlotOperator),
):
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["ferry", "test"],
        doc_md=__doc__,
    ):
        operator(task_id=dag_id.removeprefix("ferry_test_"), retries=0)
