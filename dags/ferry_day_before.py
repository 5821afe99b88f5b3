"""
# ferry_day_before: everything that can be done before the freeze

Trigger it by hand the day before D-day, after `ferry_week_prior` completed (it refuses to start
otherwise). The old side keeps serving throughout.

1. `preflight`: the pre-flight checks; a NO-GO stops the stage here. `check_week_prior_complete`: the ledger says so.
2. `deploy_webhook_recorder`: the recorder on the new cluster, waited until ready.
3. `sync_spaces_to_s3`: the Spaces buckets copied to S3 ahead of time (incremental, verified; D-day only copies what changed).
4. `apply_ssm_production`: the SSM parameters' production values.
5. `lower_dns_ttls`: every record of the plan to its low TTL, so D-day's switch propagates within a minute.
6. `scale_down_deployments`: the new cluster's deployments to zero, their counts recorded for D-day.
7. `mark_stage_complete`: recorded in the ledger; `ferry_d_day` checks for it.

Every task is safe to re-run. Undone by `ferry_rollback` with undo_all_stages (DNS restored,
deployments back to their counts, recorder removed, SSM production values restored).
Trigger it with **dry run** (the trigger form) to see what each task would change, changing nothing.
"""

from __future__ import annotations

from airflow.sdk import DAG, TaskGroup

from ferry.operators.kube import KubeScaleDownDeploymentsOperator
from ferry.operators.route53 import Route53LowerTtlOperator
from ferry.operators.ssm import SsmApplyParametersOperator
from ferry.operators.stages import FerryCheckStageCompleteOperator, FerryMarkStageCompleteOperator
from ferry.operators.storage import StorageSyncBucketsOperator
from ferry.operators.webhooks import WebhooksDeployRecorderOperator
from ferry.taskgroups import preflight_checks, stage_dag_args

with DAG(schedule=None, **stage_dag_args("ferry_day_before", __doc__)):
    with TaskGroup("preflight") as preflight:
        preflight_checks()
    previous = FerryCheckStageCompleteOperator(
        task_id="check_week_prior_complete",
        stage="ferry_week_prior",
        doc_md="Refuses to go on unless the ledger records ferry_week_prior's completion. Changes nothing.",
    )
    recorder = WebhooksDeployRecorderOperator(
        task_id="deploy_webhook_recorder",
        doc_md="Deploys the webhook recorder to the new cluster and waits until ready. Undone by: WebhooksRemoveRecorderOperator.",
    )
    spaces = StorageSyncBucketsOperator(
        task_id="sync_spaces_to_s3",
        doc_md="Copies the Spaces buckets to S3 (incremental, verified). Changes: the target buckets only; nothing to undo.",
    )
    ssm = SsmApplyParametersOperator(
        task_id="apply_ssm_production",
        phase="production",
        doc_md="Writes the SSM parameters' production values. Undone by: SsmRestoreParametersOperator(phase=production).",
    )
    ttls = Route53LowerTtlOperator(
        task_id="lower_dns_ttls",
        doc_md="Lowers each DNS record's TTL (value unchanged). Undone by: Route53RestoreRecordsOperator (ferry_rollback).",
    )
    scale = KubeScaleDownDeploymentsOperator(
        task_id="scale_down_deployments",
        doc_md="Scales the new cluster's deployments to zero, recording their counts. "
        "Undone by: KubeRestoreReplicasOperator (D-day scales them back up).",
    )
    done = FerryMarkStageCompleteOperator(
        task_id="mark_stage_complete", doc_md="Records the stage's completion in the ledger for ferry_d_day."
    )
    preflight >> previous >> [recorder, spaces, ssm, ttls, scale] >> done
