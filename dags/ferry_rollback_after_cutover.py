"""
# ferry_rollback_after_cutover: give the service back to the old side, keeping the new side's writes

Trigger it when the new side must be abandoned after D-day's cutover: after the DNS switch, or after D-day
failed once the target could take writes (`ferry_rollback` refuses then, pointing here). It needs the
reverse replication D-day set up (`replication.reverse` in the plan): every write the new side accepted
since the cutover is already on its way to the old database. Three human gates, as in D-day.

1. `check_reverse_replication`: refuses unless the reverse replication exists and streams (logs its lag), and
   while a table created on the new side since the cutover holds rows outside the reverse publication (no
   comparison would see them; it names the fix: the table on the old source, added to the publication, the
   subscription refreshed).
2. **`gate_go_no_go`**, then `route_webhooks_to_recorder` (webhooks are kept by the recorder, from the new app's
   host name too), `scale_down_new_deployments` (the new app stops writing).
3. `pause_pooler` (with `source.pooler`: the old app's queries wait in its PgBouncer, which points at the target),
   `fence_target`: the target refuses every application write. **The way back's write freeze starts here.**
4. `wait_reverse_caught_up`: deferred until the old source confirmed the target's fence position; then, beside
   the comparison, `copy_large_objects_back`: the new side's large objects to the old source (replication does
   not carry them), verified by md5.
5. `list_tables`, `compare_data` (every table whole, in one task: a mapped task's scheduling costs more
   than its comparison here), `compare_report`; **`gate_comparison`**.
6. `stop_reverse_replication` (refuses unless the target is fenced and caught up), `sync_sequences_to_source`
   (the old side's sequences past the target's), `unfence_source`: the old database takes writes again;
   `restore_pooler`: PgBouncer pointed back at the old source and resumed. **The freeze ends here.**
7. `restore_ssm_cutover`, `start_vm_services` (the old app), **`gate_restore_dns`**, `restore_dns`,
   `replay_webhooks_to_old_app` (the events recorded meanwhile; those the new app took are not sent again:
   their effects came back through the reverse replication), `write_report`.

Every step is safe to run again and does nothing when its work is done. The target stays fenced: it no
longer takes writes, and a next attempt starts again from `ferry_week_prior` (after `ferry_rollback` with
undo_all_stages, which lifts that fence). Zero rows lost: every row the new side committed before its fence
is on the old side (compared), and every webhook the recorder acknowledged reaches the old app once.
"""

from __future__ import annotations

from airflow.sdk import DAG, BaseOperator, Param

from ferry.ledger import Action
from ferry.operators.compare import (
    ReplicationCompareAllOperator,
    ReplicationCompareReportOperator,
    ReplicationListTablesOperator,
)
from ferry.operators.fence import (
    TARGET_FENCE_LSN_KEY,
    ReplicationFenceTargetOperator,
    ReplicationUnfenceSourceOperator,
)
from ferry.operators.kube import KubeScaleDownDeploymentsOperator
from ferry.operators.objects import ReplicationCopyLargeObjectsOperator
from ferry.operators.pooler import PoolerPauseOperator, PoolerSwitchOperator
from ferry.operators.reverse import (
    FerryStageReportOperator,
    ReplicationStopReverseOperator,
    ReverseCaughtUpSensor,
    ReverseCheckOperator,
)
from ferry.operators.route53 import Route53RestoreRecordsOperator, Route53RouteWebhooksToRecorderOperator
from ferry.operators.sequences import ReplicationSyncSequencesOperator
from ferry.operators.ssm import SsmRestoreParametersOperator
from ferry.operators.vms import VmStartServicesOperator
from ferry.operators.webhooks import WebhooksReplayOperator
from ferry.taskgroups import approval_gate, stage_dag_args


def gate(task_id: str, subject: str, body: str) -> BaseOperator:
    return approval_gate(task_id, subject, body, "stops here (re-trigger to resume)")


params = {
    "catch_up_timeout_s": Param(
        None,
        type=["null", "integer"],
        minimum=1,
        title="Reverse catch-up timeout (s)",
        description="How long wait_reverse_caught_up waits for the old source to confirm the target's fence; "
        "empty: 1800.",
    )
}

with DAG(
    schedule=None,
    **stage_dag_args("ferry_rollback_after_cutover", __doc__, "rollback", retry_delay_s=15, params=params),
):
    check = ReverseCheckOperator(
        task_id="check_reverse_replication",
        allow_lag=True,
        refuse_rows_left_behind=True,
        doc_md="Refuses unless the reverse replication exists and streams, and while a table created on the new "
        "side holds rows outside the reverse publication (it names the fix); logs its lag and the WAL it keeps.",
    )
    go = gate(
        "gate_go_no_go",
        "Give the service back to the old side?",
        "The reverse replication streams (check_reverse_replication's log). Next: webhooks to the recorder, the "
        "new app scaled to zero, the target fenced (the application cannot write until the old side serves).",
    )
    webhooks = Route53RouteWebhooksToRecorderOperator(
        task_id="route_webhooks_to_recorder",
        from_new_side=True,
        doc_md="Points the webhook host at the recorder (from the new app too). Undone by: restore_dns.",
    )
    scale_down = KubeScaleDownDeploymentsOperator(
        task_id="scale_down_new_deployments", doc_md="Scales the new deployments to zero (counts recorded)."
    )
    pause = PoolerPauseOperator(
        task_id="pause_pooler",
        doc_md="With source.pooler: pauses the old side's PgBouncer (it points at the target since D-day): the old "
        "app's queries wait there while the target is fenced, none fails. Skipped without a pooler.",
    )
    fence = ReplicationFenceTargetOperator(
        task_id="fence_target",
        doc_md="Fences the target against application writes; its WAL position goes to XCom and the ledger.",
    )
    caught_up = ReverseCaughtUpSensor(
        task_id="wait_reverse_caught_up",
        fence_lsn=f"{{{{ ti.xcom_pull(task_ids='fence_target', key='{TARGET_FENCE_LSN_KEY}') or '' }}}}",
        doc_md="Waits (deferred) until the old source confirmed the target's fence position.",
    )
    objects = ReplicationCopyLargeObjectsOperator(
        task_id="copy_large_objects_back",
        direction="to_source",
        doc_md="The new side's large objects to the old source (replication does not carry them), those it removed "
        "removed there too; every one verified by md5.",
    )
    tables = ReplicationListTablesOperator(task_id="list_tables", doc_md="The tables to compare, one mapped task each.")
    compare = ReplicationCompareAllOperator(
        task_id="compare_data",
        fix="Do not unfence the old source: find why it lacks the new side's rows (the reverse subscription's "
        "apply errors in its server log), fix, then re-run this task.",
        doc_md="Compares every table whole, in this one task (the application cannot write meanwhile); fails on "
        "any difference.",
    )
    compare_report = ReplicationCompareReportOperator(
        task_id="compare_report",
        list_task_id="list_tables",
        compare_task_id="compare_data",
        changes_task_id=None,
        live_task_id=None,
        doc_md="The comparison report; fails when anything differs.",
    )
    compared = gate(
        "gate_comparison",
        "The old source has every row of the target: go on?",
        "Read compare_report's log. Next, the reverse replication ends and the old database takes writes again.",
    )
    stop_reverse = ReplicationStopReverseOperator(
        task_id="stop_reverse_replication",
        require="caught_up",
        doc_md="Drops the reverse subscription, its slot and publication; refuses unless fenced and caught up.",
    )
    sequences = ReplicationSyncSequencesOperator(
        task_id="sync_sequences_to_source",
        direction="to_source",
        doc_md="Sets every sequence on the old source past the target's.",
    )
    unfence = ReplicationUnfenceSourceOperator(
        task_id="unfence_source", doc_md="The old database takes the application's writes again."
    )
    ssm = SsmRestoreParametersOperator(
        task_id="restore_ssm_cutover", phase="cutover", doc_md="SSM parameters back to their values before D-day."
    )
    vms = VmStartServicesOperator(task_id="start_vm_services", doc_md="Starts the old app's units, verified.")
    pooler = PoolerSwitchOperator(
        task_id="restore_pooler",
        side="source",
        doc_md="With source.pooler: PgBouncer pointed back at the old source (as it was before D-day) and resumed: "
        "the old app's waiting queries go on there. Skipped without a pooler.",
    )
    dns_gate = gate(
        "gate_restore_dns",
        "Point DNS back at the old side?",
        "The old database takes writes and the old app runs. Next, every record Ferry changed goes back.",
    )
    dns = Route53RestoreRecordsOperator(task_id="restore_dns", doc_md="Every record Ferry changed, back as it was.")
    replay = WebhooksReplayOperator(
        task_id="replay_webhooks_to_old_app",
        destination="old",
        skip_delivered_to_new=True,
        doc_md="Replays the webhooks recorded meanwhile to the old app, in order, each once.",
    )
    write_report = FerryStageReportOperator(
        task_id="write_report",
        kind="rollback_after_cutover",
        compare_task_id="compare_data",
        freeze=(Action.FENCE_TARGET, Action.UNFENCE_SOURCE),
        doc_md="The report: the freeze of the way back, the comparison, the webhooks, the ledger.",
    )

    (
        check
        >> go
        >> webhooks
        >> scale_down
        >> pause
        >> fence
        >> caught_up
        >> tables
        >> compare
        >> compare_report
        >> compared
        >> stop_reverse
        >> sequences
        >> unfence
        >> [pooler, ssm, vms]
    )
    [pooler, ssm, vms] >> dns_gate >> dns >> replay >> write_report
    caught_up >> objects >> compared  # beside the comparison: one task boundary fewer in the way back's freeze
