"""
# ferry_test_replication (tests only)

The replication operators end to end, as the week-prior and D-day stages chain them:
schema copy, publication, subscription, initial copy, fence, catch-up, comparison (mapped per
table), subscription drop, sequence sync. Lives under tests/ so the product's DAG folder stays
the runbook's.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from ferry.operators.compare import (
    ReplicationCompareReportOperator,
    ReplicationCompareTableOperator,
    ReplicationListTablesOperator,
)
from ferry.operators.fence import ReplicationFenceSourceOperator, fence_lsn_of
from ferry.operators.replication import (
    ReplicationCreatePublicationOperator,
    ReplicationCreateSubscriptionOperator,
    ReplicationDropSubscriptionOperator,
)
from ferry.operators.schema import ReplicationCopySchemaOperator
from ferry.operators.sequences import ReplicationSyncSequencesOperator
from ferry.sensors.replication import ReplicationCaughtUpSensor, ReplicationInitialCopySensor

with DAG(
    dag_id="ferry_test_replication",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["ferry", "test"],
    doc_md=__doc__,
    default_args={"retries": 0},
):
    tables = ReplicationListTablesOperator(task_id="list_tables")
    fence = ReplicationFenceSourceOperator(task_id="fence_source")
    compare = ReplicationCompareTableOperator.partial(task_id="compare_table").expand(table=tables.output)
    (
        ReplicationCopySchemaOperator(task_id="copy_schema")
        >> ReplicationCreatePublicationOperator(task_id="create_publication")
        >> ReplicationCreateSubscriptionOperator(task_id="create_subscription")
        >> ReplicationInitialCopySensor(task_id="wait_initial_copy", poke_interval=0.5, timeout=600)
        >> fence
        >> ReplicationCaughtUpSensor(task_id="wait_replication_caught_up", fence_lsn=fence_lsn_of(fence), timeout_s=600)
        >> tables
    )
    (
        compare
        >> ReplicationCompareReportOperator(
            task_id="compare_report", list_task_id="list_tables", compare_task_id="compare_table"
        )
        >> ReplicationDropSubscriptionOperator(task_id="drop_subscription")
        >> ReplicationSyncSequencesOperator(task_id="sync_sequences")
    )
