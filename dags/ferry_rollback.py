"""
# ferry_rollback: give the service back to the old side

Trigger it when D-day must be abandoned before its cutover (D-day's failure message says so). Once
D-day has set up the reverse replication (`start_reverse_replication`), the target may have taken writes:
every step here then refuses, changing nothing, and points to `ferry_rollback_after_cutover`. It reads the ledger and undoes, in the reverse order of D-day, what the stages did;
every step is driven by the ledger, does nothing when there is nothing to undo, and is safe to
run again. A dry run (trigger form) reports what each step would undo and changes nothing.

1. `scale_down_new_deployments`: the new cluster's deployments back to zero, so only the old side serves
   (with undo_all_stages: back to their counts before Ferry, by `restore_deployment_counts`).
2. `restore_ssm_cutover`: the SSM parameters D-day pointed at RDS, back to their earlier versions.
3. `delete_read_replicas`: the RDS read replicas Ferry created, deleted.
4. `unfence_source`: the source database writable again for the application roles; `restore_pooler` (with
   `source.pooler`): the old side's PgBouncer pointed at the source and resumed.
5. `drop_change_capture`: D-day's change capture slots dropped on both sides (they would keep WAL);
   `stop_reverse_replication`: what a reverse replication set-up that failed half-way left (its slot and
   publication on the target).
6. `start_vm_services`: the units Ferry stopped on the VMs, started again (reverse order), verified.
7. `restore_dns`: every record Ferry changed (the webhook host included), back exactly as it was.
8. `replay_webhooks_to_old_app`: every webhook recorded meanwhile, in order, each once, to the old app.
9. With **undo_all_stages** (trigger form; off by default, so the next D-day attempt finds the
   target still replicating), the earlier stages too, in reverse: `restore_deployment_counts`
   (the new deployments back to their counts before Ferry), `restore_ssm_production`,
   `remove_webhook_recorder`, `restore_ssm_staging`, `drop_subscription`, `drop_publication`,
   `drop_orphan_slot`, `unfence_target` (the fence D-day's `fence_target` or ferry_rollback_after_cutover left; without
   undo_all_stages it stays: the target replicates and refuses the application's writes), `remove_copied_large_objects`, `drop_copied_schema` (the tables week_prior copied to the target, whose
   rows are copies of the source's; refused once D-day has pointed the application's DNS at the
   new side).
10. `rollback_result`: fails the run if any step failed, naming it; the others still ran.

Nothing is lost: writes refused by the fence were refused, not dropped, and every webhook the
recorder acknowledged reaches the old app.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, TriggerRule

from ferry.operators.capture import CaptureStopOperator
from ferry.operators.fence import ReplicationUnfenceSourceOperator
from ferry.operators.kube import KubeRestoreReplicasOperator, KubeScaleDownDeploymentsOperator
from ferry.operators.objects import ReplicationRemoveCopiedLargeObjectsOperator
from ferry.operators.pooler import PoolerSwitchOperator
from ferry.operators.rds import RdsDeleteReadReplicasOperator
from ferry.operators.replication import (
    ReplicationDropOrphanSlotOperator,
    ReplicationDropPublicationOperator,
    ReplicationDropSubscriptionOperator,
)
from ferry.operators.reverse import ReplicationStopReverseOperator, ReplicationUnfenceTargetOperator
from ferry.operators.route53 import Route53RestoreRecordsOperator
from ferry.operators.schema import ReplicationDropCopiedSchemaOperator
from ferry.operators.ssm import SsmRestoreParametersOperator
from ferry.operators.stages import RollbackResultOperator
from ferry.operators.vms import VmStartServicesOperator
from ferry.operators.webhooks import WebhooksRemoveRecorderOperator, WebhooksReplayOperator
from ferry.taskgroups import stage_dag_args

UNDO_ALL = Param(
    False,
    type=["null", "boolean"],  # not marked required in the form: off is the normal answer
    title="Undo all stages",
    description="Also undo ferry_day_before and ferry_week_prior: recorder, SSM values, subscription, publication, "
    "the schema copied to the target.",
)
args = stage_dag_args("ferry_rollback", __doc__, "rollback", retry_delay_s=15, params={"undo_all_stages": UNDO_ALL})
args["default_args"]["trigger_rule"] = TriggerRule.ALL_DONE  # every step runs, whatever the one before did
args["default_args"]["refuse_while_reverse"] = True  # after the cutover: ferry_rollback_after_cutover

with DAG(schedule=None, **args):
    steps = [
        KubeScaleDownDeploymentsOperator(
            task_id="scale_down_new_deployments",
            skip_if_param="undo_all_stages",  # then restore_deployment_counts sets the counts from before Ferry
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
        PoolerSwitchOperator(
            task_id="restore_pooler",
            side="source",
            doc_md="With source.pooler: the old side's PgBouncer pointed back at the source (as the ledger says it "
            "was) and resumed. Undoes: the pause in fence_source_and_catch_up.",
        ),
        CaptureStopOperator(
            task_id="drop_change_capture",
            doc_md="Drops D-day's change capture slots on both sides, if any. Undoes: start_change_capture.",
        ),
        ReplicationStopReverseOperator(
            task_id="stop_reverse_replication",
            doc_md="Drops what a half-done reverse replication set-up left on the target. Undoes: "
            "start_reverse_replication (once its subscription exists, every step here refuses).",
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
        KubeRestoreReplicasOperator(
            task_id="restore_deployment_counts",
            only_if_param="undo_all_stages",
            doc_md="The new deployments back to their counts before Ferry. Undoes: scale_down_deployments.",
        ),
        SsmRestoreParametersOperator(
            task_id="restore_ssm_production",
            phase="production",
            only_if_param="undo_all_stages",
            doc_md="SSM values from before the production phase. Undoes: apply_ssm_production.",
        ),
        WebhooksRemoveRecorderOperator(
            task_id="remove_webhook_recorder",
            only_if_param="undo_all_stages",
            doc_md="Removes what deploy_webhook_recorder created. Undoes: deploy_webhook_recorder.",
        ),
        SsmRestoreParametersOperator(
            task_id="restore_ssm_staging",
            phase="staging",
            only_if_param="undo_all_stages",
            doc_md="SSM values from before the staging phase. Undoes: apply_ssm_staging.",
        ),
        ReplicationDropSubscriptionOperator(
            task_id="drop_subscription",
            only_if_param="undo_all_stages",
            doc_md="Drops the subscription on the target. Undoes: create_subscription.",
        ),
        ReplicationDropPublicationOperator(
            task_id="drop_publication",
            only_if_param="undo_all_stages",
            doc_md="Drops the publication on the source. Undoes: create_publication.",
        ),
        ReplicationDropOrphanSlotOperator(
            task_id="drop_orphan_slot",
            only_if_param="undo_all_stages",
            doc_md="Drops a slot a subscription left on the source when dropped while the source was unreachable.",
        ),
        ReplicationUnfenceTargetOperator(
            task_id="unfence_target",
            only_if_param="undo_all_stages",
            doc_md="Lifts the fence on the target: D-day's fence_target (put before the new side came up; without "
            "undo_all_stages it stays, so the new app's pods cannot write to a target still replicating) or the one "
            "ferry_rollback_after_cutover left. Undoes: fence_target.",
        ),
        ReplicationRemoveCopiedLargeObjectsOperator(
            task_id="remove_copied_large_objects",
            only_if_param="undo_all_stages",
            doc_md="Removes the large objects D-day copied to the target, once DNS never pointed at the new side. "
            "Undoes: copy_large_objects.",
        ),
        ReplicationDropCopiedSchemaOperator(
            task_id="drop_copied_schema",
            only_if_param="undo_all_stages",
            doc_md="Drops the tables Ferry copied to the target, once nothing replicates into them and DNS "
            "never pointed at the new side. Undoes: copy_schema.",
        ),
        RollbackResultOperator(task_id="rollback_result", doc_md="Fails the run if any step failed, naming it."),
    ]
    for before, after in zip(steps, steps[1:], strict=False):
        before >> after
