"""
# ferry_d_day: the cutover

Trigger it on D-day, after `ferry_day_before` completed (it refuses to start otherwise). Everything slow on AWS
happens before the go/no-go, while the old side still serves; nothing slow and no person is inside the cutover.
Human gates (Airflow's Required Actions): the **go/no-go** before the freeze, and, with the reverse replication,
after the DNS switch the decision to keep the new side (`gate_point_of_no_return`); no person inside the write
freeze (it goes on by itself once every table is verified equal) unless the plan sets
`thresholds.comparison_gate: person`, which adds a gate after the data comparison. Until the promotion everything
is undone by `ferry_rollback`; if a task fails before it, stop and trigger `ferry_rollback`. After it,
`ferry_rollback_after_cutover`.

1. `scope`: tables added to the source since week prior are created on the target, published,
   subscribed and copied (each step changes nothing when none was added). `preflight`,
   `check_day_before_complete`.
2. `start_change_capture` (a logical decoding slot per side: every row changed from now on is captured). Then,
   beside the comparison, what is slow on AWS, while the application writes and before the go/no-go (not in the
   users' downtime): `create_read_replicas` (the target's: minutes on RDS; they follow the target as it
   replicates), `copy_large_objects_ahead` (the freeze copies only those written since), and **the new side up and
   ready**: `fence_target` (the target refuses every application write until the promotion; replication still
   applies), `apply_ssm_cutover`, `restore_deployments` (scaled up, every replica ready: tens of seconds per
   deployment on EKS), `restart_pgbouncer`, `smoke_test_new_app`, `refresh_materialized_views_ahead`. Then
   `list_tables`, `compare_live` (one mapped task per table, while the application still writes; ranges that keep
   differing are carried into the freeze), `drain_change_capture`, **`gate_go_no_go`**,
   `drain_change_capture_after_gate` (what changed while the gate waited, so the freeze's own drain holds only the
   seconds before the fence). With `thresholds.compare_in_freeze: full` these compare nothing and the whole
   comparison runs in the freeze.
3. `route_webhooks_to_recorder`: billing webhooks go to the recorder (stored in S3, replayed later).
4. With `source.pooler` (the old side's PgBouncer) **the switch happens at the pooler**: nothing is stopped; the
   old app's queries wait in the pooler for the freeze, none fails, and go on on the promoted target; the users'
   pause is the freeze. With `thresholds.comparison_gate: auto` (the default) the whole freeze is **one task**,
   `cutover_at_pooler`: each boundary between tasks costs the waiting users 0.3 to 1 s of scheduling. Its steps
   (each in the ledger, each timed in its log and in the report's timeline) are those of steps 5 to 7 below:
   PAUSE, fence, catch-up in place, the comparison of the changes, the large objects, the last check, the
   promotion, the reverse publication and slot, the pooler pointed at the target and RESUMEd, the reverse
   subscription. Without a pooler, `stop_vm_services`: the old app's units stopped over SSH, and the users wait
   until DNS moves them; the freeze's steps are then tasks of their own (also with a person at the comparison).
5. `fence_source_and_catch_up`: with a pooler, first `PAUSE` (the old app's queries wait there); the source fenced
   (no role but Ferry's can write; the sessions of every other writer ended, and those of clients sharing Ferry's
   own login), then a wait until the target confirmed the fence's WAL position (in place for a few seconds, then
   deferred to the triggerer).
6. `compare_changes` (fails first, naming it, when a table carries the fence that `list_tables` never knew:
   created since, never published nor compared; then drains the capture a last time, and verifies every table, side by side:
   only the rows changed since its live comparison and the ranges it left open, so the freeze does
   not grow with the data; a table it cannot verify that way is compared whole, saying why: none
   normally, all with `compare_in_freeze: full`; then the report of what was verified when); beside it
   `copy_large_objects` (replication does not carry them; verified by md5). With
   `thresholds.comparison_gate: person`, **`gate_comparison`** (its question says what a narrowed comparison
   did not verify); with `auto` (the default) no person is asked inside the freeze: D-day goes on by itself
   once every table is verified equal, and stops on any difference or any table not verified.
   **The guardrail:** the freeze may last `thresholds.max_freeze_s` up to the promotion (30 s, or 900 s with a
   person at the comparison): the catch-up waits no longer, and no step of the freeze starts past it. When a
   step of the freeze fails (a difference, a catch-up that cannot finish, the budget spent), `revert_freeze`
   unfences the source and resumes the pooler on it (or starts the old app's units again) by itself, and writes a report saying why; D-day
   fails, and `ferry_rollback` undoes the rest.
7. `drop_subscription_and_sync_sequences`: first the last check, read from the change capture without consuming
   it: no table in scope changed on either side since `compare_changes` (a client sharing Ferry's login, a write
   made directly on the target while the gate waited); else it stops, naming each, the subscription still
   there. Then the subscription dropped, every sequence set past the
   source's; the target stands alone and is writable; `drop_change_capture`; `start_reverse_replication` (with
   `replication.reverse` in the plan: before the target takes its first application write, a publication and a
   slot on it and a subscription on the old source, so every write the new side accepts reaches the old
   database). With a pooler, the promotion itself creates the reverse publication and slot, lifts the target's
   fence, points PgBouncer at the target and resumes it (the old app serves from the new database), then
   subscribes the old source.
8. After the promotion, nothing slow: `refresh_materialized_views` again and `drop_change_capture` beside the
   switch; without a pooler, `unfence_target` (after `start_reverse_replication`: the reverse slot keeps the new
   app's first write), then at once `switch_dns` (every record to its new value, INSYNC); `replay_webhooks` (every
   recorded webhook, in order, once, to the new app), `write_report` (Markdown, JSON and a timeline chart, locally
   and in S3).
9. With `replication.reverse`, **`gate_point_of_no_return`** after the switch: the new side serves; keep it? It
   is not a point of no return: `ferry_rollback_after_cutover` brings the service back with the new side's writes
   until `ferry_decommission`. Without `replication.reverse` the promotion is the point of no return, and the
   go/no-go says so.

The trigger form: **dry run** (every task reports what it would change and changes nothing; the
gates still ask), the **tables to compare** (empty: the plan's choice), the **timeouts** of
the catch-up wait and of each Kubernetes rollout (empty: 1800 s and 600 s), and a **weighted DNS
switch** (say 10, 50, 100: the share of answers for the new side at each step, with a pause to
watch it; empty: all at once).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, BaseOperator, TaskGroup

from ferry.operators.capture import CaptureDrainOperator, CaptureStartOperator, CaptureStopOperator
from ferry.operators.compare import (
    ReplicationCompareChangesOperator,
    ReplicationCompareLiveOperator,
    ReplicationListTablesOperator,
)
from ferry.operators.cutover import ReplicationCutoverAtPoolerOperator, ReplicationPromoteAtPoolerOperator
from ferry.operators.fence import ReplicationFenceAndCatchUpOperator, ReplicationFenceTargetOperator
from ferry.operators.kube import KubeRestoreReplicasOperator, KubeRolloutRestartOperator
from ferry.operators.objects import ReplicationCopyLargeObjectsOperator, ReplicationRefreshMaterializedViewsOperator
from ferry.operators.rds import RdsCreateReadReplicasOperator
from ferry.operators.replication import (
    ReplicationCreatePublicationOperator,
    ReplicationPromoteTargetOperator,
    ReplicationRefreshSubscriptionOperator,
)
from ferry.operators.reverse import ReplicationStartReverseOperator, ReplicationUnfenceTargetOperator
from ferry.operators.revert import FerryRevertFreezeOperator
from ferry.operators.route53 import Route53RouteWebhooksToRecorderOperator, Route53SwitchRecordsOperator
from ferry.operators.schema import ReplicationCopySchemaOperator
from ferry.operators.ssm import SsmApplyParametersOperator
from ferry.operators.stages import (
    FerryCheckStageCompleteOperator,
    FerryMarkStageCompleteOperator,
    FerrySmokeTestOperator,
    FerryWriteReportOperator,
)
from ferry.operators.vms import VmStopServicesOperator
from ferry.operators.webhooks import WebhooksReplayOperator
from ferry.plan import load_plan
from ferry.sensors.replication import ReplicationInitialCopySensor
from ferry.taskgroups import approval_gate, cutover_params, preflight_checks, stage_dag_args


def gate(task_id: str, subject: str, body: str) -> BaseOperator:
    return approval_gate(task_id, subject, body, "stops D-day (then run ferry_rollback)")


with DAG(schedule=None, **stage_dag_args("ferry_d_day", __doc__, "d-day", retry_delay_s=15, params=cutover_params())):
    with TaskGroup("scope") as scope:
        (
            ReplicationCopySchemaOperator(
                task_id="copy_schema", doc_md="Creates on the target the tables added to the source since week prior."
            )
            >> ReplicationCreatePublicationOperator(
                task_id="create_publication", doc_md="Publishes those tables (the publication follows the scope)."
            )
            >> ReplicationRefreshSubscriptionOperator(
                task_id="refresh_subscription", doc_md="Subscribes to them, copying their rows."
            )
            >> ReplicationInitialCopySensor(
                task_id="wait_initial_copy",
                poke_interval=2,
                timeout=3600,
                doc_md="Waits until their rows are copied. Each step changes nothing when no table was added.",
            )
        )
    with TaskGroup("preflight") as preflight:
        preflight_checks()
    previous = FerryCheckStageCompleteOperator(
        task_id="check_day_before_complete",
        stage="ferry_day_before",
        doc_md="Refuses to start unless ferry_day_before completed.",
    )
    capture = CaptureStartOperator(
        task_id="start_change_capture",
        doc_md="Creates a logical decoding slot on each side: every row changed from now on is captured, "
        "so the freeze verifies only those. Undone by: drop_change_capture (here after the cutover, and ferry_rollback).",
    )
    tables = ReplicationListTablesOperator(task_id="list_tables", doc_md="The tables to compare, one mapped task each.")
    live = ReplicationCompareLiveOperator.partial(
        task_id="compare_live",
        doc_md="Compares one table while the application writes; ranges still differing are carried into the freeze.",
    ).expand(table=tables.output)
    drain_live = CaptureDrainOperator(
        task_id="drain_change_capture",
        doc_md="Stores the keys changed so far (S3) and consumes them from the slots, so the freeze's drain is small.",
    )
    drain_after_gate = CaptureDrainOperator(
        task_id="drain_change_capture_after_gate",
        doc_md="Drains again what changed while the gate waited (the application still up), so the freeze's "
        "drain holds only the seconds before the fence.",
    )
    plan = load_plan()
    go = gate(
        "gate_go_no_go",
        "Start the cutover?" if plan.replication.reverse else "Start the cutover? This is the point of no return.",
        "Pre-flight passed, ferry_day_before completed, every table compared live (compare_live's logs); the new "
        "side is up and ready (restore_deployments, smoke_test_new_app) with the target fenced. The freeze starts "
        "next, and nothing in it waits for a person."
        + (
            ""
            if plan.replication.reverse
            else " The plan has no replication.reverse: after the promotion, rolling back means moving data back by "
            "hand."
        ),
    )
    objects_ahead = ReplicationCopyLargeObjectsOperator(
        task_id="copy_large_objects_ahead",
        doc_md="Copies the large objects to the target before the freeze, while the application still writes "
        "(replication does not carry them), verified by md5: the freeze's copy then carries only those written "
        "since. Undone by: remove_copied_large_objects (ferry_rollback with undo_all_stages).",
    )
    webhooks = Route53RouteWebhooksToRecorderOperator(
        task_id="route_webhooks_to_recorder",
        doc_md="Points the webhook host at the recorder. Undone by: restore_dns (ferry_rollback).",
    )
    pooled = plan.source.pooler is not None  # the switch at the pooler: the old app keeps serving
    stop = (
        None
        if pooled
        else VmStopServicesOperator(
            task_id="stop_vm_services", doc_md="Stops the old side's units. Undone by: start_vm_services."
        )
    )
    asks_a_person = plan.thresholds.comparison_gate == "person"
    one_task = pooled and not asks_a_person  # the whole freeze in one task: no scheduling gap in the users' pause
    if one_task:
        fence = changes = large_objects = promote = ReplicationCutoverAtPoolerOperator(
            task_id="cutover_at_pooler",
            timeout_s=1800,
            retries=2,  # a re-run after the promotion only finishes the switch; a difference fails without retry
            retry_delay=timedelta(seconds=2),  # the users wait in the pooler meanwhile
            doc_md="The whole write freeze in one task (each boundary between tasks costs the waiting users 0.3 to "
            "1 s): PAUSE the old side's PgBouncer (its queries wait there, none fails); fence the source; wait in "
            "place until the target confirmed the fence, no longer than thresholds.max_freeze_s; verify every table "
            "by the rows changed since its live comparison (the comparison report; stops on any difference or any "
            "table not verified); copy the large objects (md5); the last check; drop the subscription and set the "
            "sequences; the reverse publication and slot; PgBouncer pointed at the target and RESUMEd (the users' "
            "pause ends); the reverse subscription. Each step in the ledger, its duration in the log and in the "
            "D-day report's timeline. Undone by: revert_freeze (before the promotion), "
            "ferry_rollback_after_cutover (after).",
        )
        compared = None
    else:
        fence = ReplicationFenceAndCatchUpOperator(
            task_id="fence_source_and_catch_up",
            timeout_s=1800,
            retries=0,  # inside the freeze a retry waits retry_delay: revert_freeze gives the service back instead
            doc_md="With source.pooler, first pauses the old side's PgBouncer (the old app's queries wait there, none "
            "fails). Fences the source against app writes, then waits (in place, then deferred) until the target "
            "confirmed the fence's LSN, no longer than what is left of thresholds.max_freeze_s. One task: each boundary "
            "between tasks costs the freeze time. Undone by: unfence_source and restore_pooler (revert_freeze, "
            "ferry_rollback).",
        )
        changes = ReplicationCompareChangesOperator(
            task_id="compare_changes",
            compare_whole=True,
            no_person_after=not asks_a_person,
            freeze_fence_task_id="fence_source_and_catch_up",
            doc_md="Drains the change capture a last time (up to the fence on the source, after the catch-up on the "
            "target), then verifies every table by the rows changed since its live comparison and the ranges it left "
            "open (a table nothing touched is not read); a table it cannot verify that way is compared whole, with the "
            "reason (every table with thresholds.compare_in_freeze: full). Writes the comparison report; fails on any "
            "difference (and, with thresholds.comparison_gate: auto, on any table not verified).",
        )
        large_objects = ReplicationCopyLargeObjectsOperator(
            task_id="copy_large_objects",
            freeze_fence_task_id="fence_source_and_catch_up",
            doc_md="Copies the large objects (replication does not carry them) with their OIDs, verified by md5. "
            "Undone by: remove_copied_large_objects (ferry_rollback with undo_all_stages).",
        )
        compared = asks_a_person and gate(
            "gate_comparison",
            "{{ ti.xcom_pull(task_ids='compare_changes', key='verdict') or 'Source and target are equal' }}: go on?",
            "Read compare_changes' log (the comparison report). Next, the target becomes the primary.",
        )
        promote = (ReplicationPromoteAtPoolerOperator if pooled else ReplicationPromoteTargetOperator)(
            task_id="drop_subscription_and_sync_sequences",
            large_objects_task_id="copy_large_objects",
            freeze_fence_task_id="fence_source_and_catch_up",
            doc_md="Drops the subscription (the target stands alone), then sets every sequence on the target past the "
            "source's: the end of the write freeze. With source.pooler, then also the reverse replication's publication "
            "and slot on the target, the target's fence lifted, the old side's PgBouncer pointed at the target and resumed (the old app's waiting "
            "queries go on, on the new database: the users' pause ends), then the reverse subscription. One task: each "
            "boundary between tasks costs the freeze (and the waiting users) time. Undone by: restore_pooler "
            "(ferry_rollback_after_cutover).",
            # With a pooler the users wait in it while this task retries: a short delay, not the DAG's 15 s.
            **({"retry_delay": timedelta(seconds=2)} if pooled else {}),
        )
    revert = FerryRevertFreezeOperator(
        task_id="revert_freeze",
        fence_task_id=fence.task_id,
        doc_md="Only when a task of the freeze failed (or it ran past thresholds.max_freeze_s): unfences the source "
        "and starts the old app's units again, then writes a report saying why; D-day still fails (then "
        "ferry_rollback for the rest). Skipped otherwise.",
    )
    drop_capture = CaptureStopOperator(
        task_id="drop_change_capture", doc_md="Drops the change capture slots (a slot nobody reads fills a disk)."
    )
    fence_target = ReplicationFenceTargetOperator(
        task_id="fence_target",
        before_promotion=True,
        doc_md="Fences the target against every application write (replication still applies) before the new side "
        "comes up, so the new app's pods can be ready before the freeze and still write nothing until the promotion "
        "lifts the fence (a re-run after it changes nothing). Undone by: unfence_target (ferry_rollback with "
        "undo_all_stages; a next D-day attempt finds it in place).",
    )
    matviews_ahead = ReplicationRefreshMaterializedViewsOperator(
        task_id="refresh_materialized_views_ahead",
        doc_md="Refreshes every materialized view on the target before the freeze (replication does not carry their "
        "contents): the new app has them from its first request; refreshed again after the promotion.",
    )
    matviews = ReplicationRefreshMaterializedViewsOperator(
        task_id="refresh_materialized_views",
        doc_md="Refreshes every materialized view on the target again after the promotion, beside the DNS switch "
        "(nothing waits for it).",
    )
    replicas = RdsCreateReadReplicasOperator(
        task_id="create_read_replicas",
        doc_md="Creates the read replicas of the target and waits until each is available, before the go/no-go: "
        "minutes on RDS, spent while the old side still serves (they follow the target as it replicates). Undone by: "
        "RdsDeleteReadReplicasOperator (ferry_rollback).",
    )
    ssm = SsmApplyParametersOperator(
        task_id="apply_ssm_cutover",
        phase="cutover",
        doc_md="Points SSM parameters at RDS, before the go/no-go (the new side reads them as it comes up). Undone "
        "by: restore_ssm_cutover (ferry_rollback).",
    )
    scale_up = KubeRestoreReplicasOperator(
        task_id="restore_deployments",
        doc_md="Scales the new deployments back up and waits until every replica is ready, before the go/no-go: "
        "tens of seconds per deployment on EKS, spent while the old side serves. The target is fenced meanwhile. "
        "Undone by: scale_down_new_deployments (ferry_rollback).",
    )
    pgbouncer = KubeRolloutRestartOperator(
        task_id="restart_pgbouncer", doc_md="Restarts the new side's PgBouncer so it reads the new endpoints."
    )
    smoke = FerrySmokeTestOperator(
        task_id="smoke_test_new_app", doc_md="Checks the new application answers, before the go/no-go."
    )
    reverse = ReplicationStartReverseOperator(
        task_id="start_reverse_replication",
        doc_md="With replication.reverse: a publication and a slot on the target, a subscription on the old source "
        "(copying nothing), before the target's first application write. Undone by: stop_reverse_replication "
        "(ferry_rollback_after_cutover, ferry_decommission).",
    )
    unfence_target = (
        None
        if pooled  # the switch at the pooler lifts it itself, after the reverse slot and before RESUME
        else ReplicationUnfenceTargetOperator(
            task_id="unfence_target",
            doc_md="Lifts the target's fence (fence_target): the new app may write, once the reverse replication's "
            "slot keeps every write for the old source. Then the DNS switch.",
        )
    )
    if plan.replication.reverse:
        no_return = gate(
            "gate_point_of_no_return",
            "The new side serves: keep it?",
            "DNS points at AWS and the report is written (write_report). The reverse replication streams every write "
            "the new side takes back to the old database: until ferry_decommission, ferry_rollback_after_cutover "
            "gives the service back without losing one. Approve to close D-day; reject and trigger "
            "ferry_rollback_after_cutover to go back.",
        )
    else:
        no_return = None  # without the reverse replication the promotion is the point of no return: the go/no-go
    dns = Route53SwitchRecordsOperator(
        task_id="switch_dns",
        doc_md="Points every record at its new value, INSYNC, verified: all at once, or in the trigger form's "
        "weighted steps (the webhook host at once).",
    )
    replay = WebhooksReplayOperator(
        task_id="replay_webhooks", destination="new", doc_md="Replays recorded webhooks to the new app."
    )
    report = FerryWriteReportOperator(
        task_id="write_report",
        compare_task_id=None,
        changes_task_id=changes.task_id,
        caught_up_task_id=fence.task_id,
        doc_md="Writes the D-day report.",
    )
    done = FerryMarkStageCompleteOperator(
        task_id="mark_stage_complete", doc_md="Records D-day's completion in the ledger."
    )

    scope >> preflight >> previous >> capture >> tables
    # Slow on AWS (minutes), so made while the old side still serves and before the go/no-go, not in the users'
    # downtime: the read replicas (they follow the target as it replicates), the large objects, and the new side
    # ready to serve (the target fenced first: the new app's pods refuse to write until the promotion).
    capture >> replicas >> go
    capture >> objects_ahead >> go
    capture >> fence_target >> [ssm, matviews_ahead]
    ssm >> scale_up >> pgbouncer >> smoke >> go
    matviews_ahead >> go
    live >> drain_live >> go >> drain_after_gate >> webhooks
    if stop:
        webhooks >> stop >> fence
    else:
        webhooks >> fence
    if one_task:
        freeze = [promote, reverse]
    else:
        fence >> [changes, large_objects]
        if compared:  # thresholds.comparison_gate: person; auto goes on once everything is verified equal
            [changes, large_objects] >> compared >> promote
        else:
            [changes, large_objects] >> promote
        freeze = [fence, changes, large_objects, *([compared] if compared else []), promote, reverse]
    [*([stop] if stop else []), *freeze] >> revert
    promote >> [matviews, drop_capture, reverse]
    if unfence_target:  # without a pooler: the target takes the new app's writes once the reverse slot keeps them
        reverse >> unfence_target >> dns
    else:
        reverse >> dns
    dns >> replay >> report
    if no_return:  # with the reverse replication: after the switch, the decision to keep the new side
        report >> no_return >> done
    else:
        report >> done
