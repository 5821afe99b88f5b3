"""
# ferry_test_aws (tests only)

One-task DAGs for the AWS-side operators and their inverses, so each can be run, and re-run,
on its own against the stand's moto server.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from ferry.operators.kube import (
    KubeRestoreReplicasOperator,
    KubeReviewDeploymentsOperator,
    KubeRolloutRestartOperator,
    KubeScaleDownDeploymentsOperator,
)
from ferry.operators.rds import (
    AwsReviewInfrastructureOperator,
    RdsCreateReadReplicasOperator,
    RdsDeleteReadReplicasOperator,
)
from ferry.operators.route53 import (
    Route53LowerTtlOperator,
    Route53RestoreRecordsOperator,
    Route53RouteWebhooksToRecorderOperator,
    Route53SwitchRecordsOperator,
)
from ferry.operators.ssm import SsmApplyParametersOperator, SsmRestoreParametersOperator
from ferry.operators.stages import FerryCheckStageCompleteOperator
from ferry.operators.storage import StorageSyncBucketsOperator
from ferry.operators.vms import VmStartServicesOperator, VmStopServicesOperator
from ferry.operators.webhooks import (
    WebhooksDeployRecorderOperator,
    WebhooksRemoveRecorderOperator,
    WebhooksReplayOperator,
)

ONE_TASK_DAGS = {
    "ferry_test_dns_lower_ttl": (Route53LowerTtlOperator, {}),
    "ferry_test_dns_switch": (Route53SwitchRecordsOperator, {}),
    "ferry_test_dns_restore": (Route53RestoreRecordsOperator, {}),
    "ferry_test_dns_route_webhooks": (Route53RouteWebhooksToRecorderOperator, {}),
    "ferry_test_dns_weighted": (Route53SwitchRecordsOperator, {"weighted_steps": [25, 50, 100], "step_pause_s": 0}),
    "ferry_test_recorder_deploy": (WebhooksDeployRecorderOperator, {"poll_s": 0.2, "timeout_s": 30}),
    "ferry_test_recorder_remove": (WebhooksRemoveRecorderOperator, {}),
    "ferry_test_ssm_apply": (SsmApplyParametersOperator, {"phase": "{{ params.phase }}"}),
    "ferry_test_ssm_restore": (SsmRestoreParametersOperator, {"phase": "{{ params.phase }}"}),
    "ferry_test_storage_sync": (StorageSyncBucketsOperator, {"workers": 8, "part_size_mib": 5}),
    "ferry_test_rds_replicas": (RdsCreateReadReplicasOperator, {"check_interval": 1}),
    "ferry_test_rds_replicas_delete": (RdsDeleteReadReplicasOperator, {"check_interval": 1}),
    "ferry_test_aws_review": (AwsReviewInfrastructureOperator, {}),
    "ferry_test_kube_scale_down": (KubeScaleDownDeploymentsOperator, {}),
    "ferry_test_kube_restore": (KubeRestoreReplicasOperator, {"poll_s": 0.2, "timeout_s": 30}),
    "ferry_test_kube_restart": (KubeRolloutRestartOperator, {"poll_s": 0.2, "timeout_s": 30}),
    "ferry_test_kube_wait": (KubeRestoreReplicasOperator, {"poll_s": 0.2, "timeout_s": 3}),
    "ferry_test_kube_review": (KubeReviewDeploymentsOperator, {}),
    "ferry_test_check_week_prior": (FerryCheckStageCompleteOperator, {"stage": "ferry_week_prior"}),
    "ferry_test_vms_stop": (VmStopServicesOperator, {}),
    "ferry_test_vms_start": (VmStartServicesOperator, {}),
    "ferry_test_webhooks_replay": (
        WebhooksReplayOperator,
        {"destination": "{{ params.destination }}", "attempts": 3, "backoff_s": 0.05},
    ),
}

for dag_id, (operator, kwargs) in ONE_TASK_DAGS.items():
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["ferry", "test"],
        doc_md=__doc__,
        params={"phase": "staging"},
    ):
        operator(task_id=dag_id.removeprefix("ferry_test_"), retries=0, **kwargs)
