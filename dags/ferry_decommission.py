"""
# ferry_decommission: retire the old side (the real point of no return)

Trigger it after the soak period you chose, once the new side has served long enough. It ends the reverse
replication D-day set up: after it, a rollback can no longer bring the new side's writes back.

1. `check_d_day_complete`, `check_reverse_replication`: refuses unless D-day completed and the reverse
   replication streams within `replication.reverse.max_lag_bytes` (a broken or lagging one could lose the new
   side's last writes on the old side; fix it first).
2. **`gate_decommission`**.
3. `stop_reverse_replication`: checked healthy again, then ended caught up (once the old source confirmed every
   write the target had taken when the step began): the subscription on the old source, its slot and the
   publication on the target.
4. `keep_source_fenced`: the old database keeps refusing the application's writes (the fence stays; a table in
   scope without it is fenced), so a stray client of the old side cannot write where nobody reads.
5. `retire_source`: the ledger records the old side as retired; from then on `ferry_rollback` refuses.
   `write_report`, `mark_stage_complete`.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ferry.operators.fence import ReplicationFenceSourceOperator
from ferry.operators.gates import FerryApprovalOperator
from ferry.operators.reverse import (
    FerryRetireSourceOperator,
    FerryStageReportOperator,
    ReplicationStopReverseOperator,
    ReverseCheckOperator,
)
from ferry.operators.stages import FerryCheckStageCompleteOperator, FerryMarkStageCompleteOperator
from ferry.taskgroups import stage_dag_args

with DAG(schedule=None, **stage_dag_args("ferry_decommission", __doc__, "decommission", retry_delay_s=15)):
    (
        FerryCheckStageCompleteOperator(
            task_id="check_d_day_complete", stage="ferry_d_day", doc_md="Refuses to start unless D-day completed."
        )
        >> ReverseCheckOperator(
            task_id="check_reverse_replication",
            doc_md="Refuses unless the reverse replication streams and is within replication.reverse.max_lag_bytes.",
        )
        >> FerryApprovalOperator(
            task_id="gate_decommission",
            subject="Retire the old side? This is the point of no return.",
            body="After this, a rollback cannot bring the new side's writes back to the old database.",
            doc_md="Human gate: approve to end the reverse replication; Reject changes nothing.",
        )
        >> ReplicationStopReverseOperator(
            task_id="stop_reverse_replication",
            require="healthy",
            doc_md="Drops the reverse subscription, its slot and publication; refuses while broken or behind.",
        )
        >> ReplicationFenceSourceOperator(
            task_id="keep_source_fenced",
            doc_md="Keeps the old database refusing the application's writes (fences any table in scope that is "
            "not): a stray client of the old side must not write where nobody reads.",
        )
        >> FerryRetireSourceOperator(task_id="retire_source", doc_md="Records the old side as retired.")
        >> FerryStageReportOperator(task_id="write_report", kind="decommission", doc_md="The last report.")
        >> FerryMarkStageCompleteOperator(task_id="mark_stage_complete", doc_md="Records the decommission.")
    )
