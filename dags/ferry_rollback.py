"""
# ferry_rollback: give the service back to the old side

Trigger it when D-day must be abandoned before the point of no return (D-day's failure message
says so). It reads the ledger and undoes, in the reverse order of D-day, what the stages did;
every step is driven by the ledger, does nothing when there is nothing to undo, and is safe to
run again. A dry run (trigger form) reports what each step would undo and changes nothing.

1. `scale_down_new_deployments`: the new cluster's deployments back to zero, so only the old side serves.
2. `restore_ssm_cutover`: the SSM parameters D-day pointed at RDS, back to their earlier versions.
3. `delete_read_replicas`: the RDS read replicas Ferry created, deleted.
4. `unfence_source`: the source database writable again for the application roles.
5. `start_vm_services`: the units Ferry stopped on the VMs, started again (reverse order), verified.
6. `restore_dns`: every record Ferry changed (the webhook host included), back exactly as it was.
7. `replay_webhooks_to_old_app`: every webhook recorded meanwhile, in order, each once, to the old app.
8. `rollback_result`: fails the run if any step failed, naming it; the others still ran.

Nothing is lost: writes refused by the fence were refused, not dropped, and every webhook the
recorder acknowledged reaches the old app.
"""

from __future__ import annotations

from airflow.sdk import DAG, TriggerRule

from ferry.operators.kube import KubeScaleDownDeploymentsOperator
from ferry.operators.rds import RdsDeleteReadReplicasOperator
from ferry.operators.replication import ReplicationUnfenceSourceOperator
from ferry.operators.route53 import Route53RestoreRecordsOperator
from ferry.operators.ssm import SsmRestoreParametersOperator
from ferry.operators.stages import RollbackResultOperator
from ferry.operators.vms import VmStartServicesOperator
from ferry.operators.webhooks import WebhooksReplayOperator
from ferry.taskgroups import stage_dag_args

args = stage_dag_args("ferry_rollback", __doc__, "rollback", retry_delay_s=15)
args["default_args"]["trigger_rule"] = TriggerRule.ALL_DONE  # every step runs, whatever the one before did

with DAG(schedule=None, **args):
    steps = [
        KubeScaleDownDeploymentsOperator(
            task_id="scale_down_new_deployments",
            doc_md="Scales the new cluster's deployments to zero (counts recorded). Undoes: restore_deployments.",
        ),
        SsmRestoreParametersOperator(
            task_id="restore_ssm_cutover",
            phase="cutover",
            doc_md="Writes back the SSM parameters' values from before D-day's cutover phase. Undoes: apply_ssm_cutover.",
        ),
        RdsDeleteReadReplicasOperator(
            task_id="delete_read_replicas",
            doc_md="Deletes the read replicas Ferry created, per the ledger. Undoes: create_read_replicas.",
        ),
        ReplicationUnfenceSourceOperator(
            task_id="unfence_source", doc_md="Lifts the write fence on the source database. Undoes: fence_source."
        ),
        VmStartServicesOperator(
            task_id="start_vm_services",
            doc_md="Starts the units Ferry stopped, per the ledger, verified. Undoes: stop_vm_services.",
        ),
        Route53RestoreRecordsOperator(
            task_id="restore_dns",
            doc_md="Restores every DNS record Ferry changed, from the ledger. Undoes: lower_dns_ttls, "
            "route_webhooks_to_recorder, switch_dns.",
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
