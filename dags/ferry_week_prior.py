"""
# ferry_week_prior: get the target in sync, about a week before D-day

Trigger it by hand once the AWS side exists. It changes the **target** side only; the old side
keeps serving, untouched apart from a publication and a replication slot on its database.

1. `preflight`: the pre-flight checks; a NO-GO stops the stage here.
2. `copy_schema`: the source schema to the target (`pg_dump --schema-only`, one transaction); refuses a target holding rows.
3. `create_publication` (source) and `create_subscription` (target); `refresh_subscription` (on a re-run, the tables that
   joined the scope since); then `wait_initial_copy` until every table is copied.
4. In parallel: `review_aws_infrastructure` (RDS, parameter group, EKS), `apply_ssm_staging` (SSM parameters, staging
   values), `review_new_cluster` (deployments exist with the plan's images, images in ECR).
5. `mark_stage_complete`: recorded in the ledger; `ferry_day_before` checks for it.

Every task is safe to re-run: what is already in place is left as it is. To undo the stage:
`ferry_rollback` with undo_all_stages (subscription, publication, SSM staging values).
Trigger it with **dry run** (the trigger form) to see what each task would change, changing nothing.
"""

from __future__ import annotations

from airflow.sdk import DAG, TaskGroup

from ferry.operators.kube import KubeReviewDeploymentsOperator
from ferry.operators.rds import AwsReviewInfrastructureOperator
from ferry.operators.replication import (
    ReplicationCreatePublicationOperator,
    ReplicationCreateSubscriptionOperator,
    ReplicationRefreshSubscriptionOperator,
)
from ferry.operators.schema import ReplicationCopySchemaOperator
from ferry.operators.ssm import SsmApplyParametersOperator
from ferry.operators.stages import FerryMarkStageCompleteOperator
from ferry.sensors.replication import ReplicationInitialCopySensor
from ferry.taskgroups import preflight_checks, stage_dag_args

with DAG(schedule=None, **stage_dag_args("ferry_week_prior", __doc__)):
    with TaskGroup("preflight") as preflight:
        preflight_checks()
    copy = ReplicationCopySchemaOperator(
        task_id="copy_schema",
        doc_md="Copies tables, types, sequences, constraints, indexes and grants to the target, no rows. "
        "Changes: the target's schema. Undone by: dropping those objects on the target (it holds no rows yet).",
    )
    publish = ReplicationCreatePublicationOperator(
        task_id="create_publication",
        doc_md="Publishes the tables in scope on the source. Undone by: ReplicationDropPublicationOperator (ferry_rollback).",
    )
    subscribe = ReplicationCreateSubscriptionOperator(
        task_id="create_subscription",
        doc_md="Subscribes the target (copies rows, then streams changes; a slot on the source). "
        "Undone by: ReplicationDropSubscriptionOperator (ferry_rollback).",
    )
    refresh = ReplicationRefreshSubscriptionOperator(
        task_id="refresh_subscription",
        doc_md="On a re-run after tables joined the scope (and the publication): subscribes to them, copying their "
        "rows. Changes nothing when the subscription covers every published table.",
    )
    initial_copy = ReplicationInitialCopySensor(
        task_id="wait_initial_copy",
        poke_interval=10,
        timeout=6 * 3600,
        mode="reschedule",
        doc_md="Waits until every table's initial copy is done. Changes nothing.",
    )
    review_aws = AwsReviewInfrastructureOperator(
        task_id="review_aws_infrastructure", doc_md="Reviews RDS and EKS; blocking items fail it. Changes nothing."
    )
    ssm = SsmApplyParametersOperator(
        task_id="apply_ssm_staging",
        phase="staging",
        doc_md="Writes the SSM parameters' staging values. Undone by: SsmRestoreParametersOperator(phase=staging).",
    )
    review_cluster = KubeReviewDeploymentsOperator(
        task_id="review_new_cluster",
        doc_md="Checks each deployment exists in the new cluster with the plan's image, and the image is in ECR. Changes nothing.",
    )
    done = FerryMarkStageCompleteOperator(
        task_id="mark_stage_complete", doc_md="Records the stage's completion in the ledger for ferry_day_before."
    )
    preflight >> copy >> publish >> subscribe >> refresh >> initial_copy >> done
    preflight >> [review_aws, ssm, review_cluster] >> done
