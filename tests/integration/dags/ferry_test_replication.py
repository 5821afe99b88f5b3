"""
# ferry_test_replication (tests only)

The replication operators end to end, as the week-prior and D-day stages chain them:
schema copy, publication, subscription, initial copy, change capture, live comparison (mapped per
table), fence and catch-up (one task), the freeze's drain and comparison with its report (compare_changes,
whole tables too when they must be), subscription drop and sequence sync (one task), capture drop.

`ferry_test_replication_drill` is the same with retries (2, 2 s apart), as the stage DAGs have: the
crash drills on the deployment kill a worker or the triggerer under it.

`ferry_test_replication_planted` is the same with `plant_differences` between the live comparison
and the fence: rows made to differ after their table's live comparison matched, in the ways the
change capture must see (see that task). The freeze must stop it, naming each. Lives under tests/ so the product's DAG folder stays
the runbook's.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from ferry.hooks.replication import ReplicationHook
from ferry.operators.capture import CaptureDrainOperator, CaptureStartOperator, CaptureStopOperator
from ferry.operators.compare import (
    ReplicationCompareChangesOperator,
    ReplicationCompareLiveOperator,
    ReplicationListTablesOperator,
)
from ferry.operators.fence import ReplicationFenceAndCatchUpOperator
from ferry.operators.replication import (
    ReplicationCreatePublicationOperator,
    ReplicationCreateSubscriptionOperator,
    ReplicationPromoteTargetOperator,
)
from ferry.operators.schema import ReplicationCopySchemaOperator
from ferry.plan import load_plan
from ferry.sensors.replication import ReplicationInitialCopySensor
from stand.core import Stand
from stand.services.postgres import PostgresPair


def plant_differences() -> dict:
    """After every table's live comparison: on the target, an update by a superuser, a delete under
    session_replication_role = replica, an insert, and a row of the keyless page_views; on the source,
    an update the target never applies (the subscription's replication origin advanced past it)."""
    subscription = load_plan().subscription
    # The stand's superuser on the target (what Ferry's login may not do: session_replication_role, the origin).
    with PostgresPair().admin(Stand(), "target") as target, ReplicationHook("ferry_source", "saas").session() as source:
        target.execute("UPDATE subscriptions SET amount = amount + 1 WHERE id = 4")
        target.execute("SET session_replication_role = replica")
        # The write load deletes events: take one that exists.
        deleted = target.execute("DELETE FROM events WHERE id = (SELECT max(id) FROM events) RETURNING id").fetchone()[
            0
        ]
        target.execute("RESET session_replication_role")
        added = target.execute(
            "INSERT INTO customers (id, email, name, country) "
            "SELECT max(id) + 1000, 'planted@example.com', 'Planted', 'NL' FROM customers RETURNING id"
        ).fetchone()[0]
        target.execute("INSERT INTO page_views VALUES (NULL, '/planted', '2026-01-01 00:00+00')")
        origin = target.execute("SELECT 'pg_' || oid FROM pg_subscription WHERE subname = %s", (subscription,))
        origin = origin.fetchone()[0]
        target.execute(f"ALTER SUBSCRIPTION {subscription} DISABLE")
        query = "SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL"
        while target.execute(query, (subscription,)).fetchone()[0]:
            time.sleep(0.2)
        source.execute("UPDATE invoices SET amount = amount + 1 WHERE id = 5")
        skip_to = source.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        target.execute("SELECT pg_replication_origin_advance(%s, %s::pg_lsn)", (origin, skip_to))
        target.execute(f"ALTER SUBSCRIPTION {subscription} ENABLE")
    return {"customer_added_on_target": added, "event_deleted_on_target": deleted}


def replication_dag(dag_id: str, plant: bool, retries: int = 0) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["ferry", "test"],
        doc_md=__doc__,
        default_args={"retries": retries, "retry_delay": timedelta(seconds=2)},
    ) as dag:
        tables = ReplicationListTablesOperator(task_id="list_tables")
        # No pause at the pooler: this DAG's promotion does not resume it; the load's writes are refused instead.
        fence = ReplicationFenceAndCatchUpOperator(
            task_id="fence_source_and_catch_up", timeout_s=600, pause_pooler=False
        )
        live = ReplicationCompareLiveOperator.partial(task_id="compare_live").expand(table=tables.output)
        changes = ReplicationCompareChangesOperator(task_id="compare_changes", compare_whole=True)
        (
            ReplicationCopySchemaOperator(task_id="copy_schema")
            >> ReplicationCreatePublicationOperator(task_id="create_publication")
            >> ReplicationCreateSubscriptionOperator(task_id="create_subscription")
            >> ReplicationInitialCopySensor(task_id="wait_initial_copy", poke_interval=0.5, timeout=600)
            >> CaptureStartOperator(task_id="start_change_capture")
            >> tables
        )
        drained = live >> CaptureDrainOperator(task_id="drain_change_capture")
        if plant:
            drained = drained >> PythonOperator(task_id="plant_differences", python_callable=plant_differences)
        (
            drained
            >> fence
            >> changes
            >> ReplicationPromoteTargetOperator(task_id="drop_subscription_and_sync_sequences")
            >> CaptureStopOperator(task_id="drop_change_capture")
        )
    return dag


replication_dag("ferry_test_replication", plant=False)
replication_dag("ferry_test_replication_planted", plant=True)
replication_dag("ferry_test_replication_drill", plant=False, retries=2)
