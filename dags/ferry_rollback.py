"""
# ferry_rollback: give the service back to the old side

Trigger it when D-day must be abandoned before the point of no return (D-day's failure message
says so). It reads the ledger and undoes, in reverse order, what the stages did; every step is
driven by the ledger, does nothing when there is nothing to undo, and is safe to run again.

1. `restore_dns`: every record Ferry changed, back exactly as it was (value and TTL).
2. `unfence_source`: the source database writable again for the application roles.
3. `start_vm_services`: the units Ferry stopped on the VMs, started again (reverse order), verified.
4. `scale_down_new_deployments`: the new cluster's deployments back to zero, so only the old side serves.
5. `replay_webhooks_to_old_app`: every webhook recorded meanwhile, in order, each once, to the old app.
6. `rollback_result`: fails the run if any step failed, naming it; the others still ran.

Nothing is lost: writes refused by the fence were refused, not dropped, and every webhook the
recorder acknowledged reaches the old app.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, TriggerRule

from ferry.operators.kube import KubeScaleDownDeploymentsOperator
from ferry.operators.replication import ReplicationUnfenceSourceOperator
from ferry.operators.route53 import Route53RestoreRecordsOperator
from ferry.operators.stages import RollbackResultOperator
from ferry.operators.vms import VmStartServicesOperator
from ferry.operators.webhooks import WebhooksReplayOperator

with DAG(
    dag_id="ferry_rollback",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["ferry", "stage", "rollback"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=15), "trigger_rule": TriggerRule.ALL_DONE},
):
    steps = [
        Route53RestoreRecordsOperator(
            task_id="restore_dns", doc_md="Restores every DNS record Ferry changed, from the ledger."
        ),
        ReplicationUnfenceSourceOperator(
            task_id="unfence_source", doc_md="Lifts the write fence on the source database."
        ),
        VmStartServicesOperator(
            task_id="start_vm_services", doc_md="Starts the units Ferry stopped, per the ledger, verified."
        ),
        KubeScaleDownDeploymentsOperator(
            task_id="scale_down_new_deployments",
            doc_md="Scales the new cluster's deployments to zero (counts recorded).",
        ),
        WebhooksReplayOperator(
            task_id="replay_webhooks_to_old_app",
            destination="old",
            doc_md="Replays every recorded webhook, in order, each once, to the old app.",
        ),
        RollbackResultOperator(task_id="rollback_result", doc_md="Fails the run if any step failed, naming it."),
    ]
    for before, after in zip(steps, steps[1:], strict=False):
        before >> after
