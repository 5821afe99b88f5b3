"""
# ferry_schema_watch: the source's schema changes carried to the target during the replication window

From `ferry_week_prior` (which starts the replication) until D-day's cutover (which ends it), the application
keeps shipping migrations on the source; logical replication carries rows, not schema changes. Every
`replication.ddl_watch_interval_s` (60 s by default) this DAG compares the schema of the tables in scope on
both sides (columns with types, nullability and defaults, renamed columns, constraints, indexes, partitions)
and, with `replication.ddl: carry`, makes the target match: a new partition before its rows arrive, a new or
renamed column, a widened type, a default, a constraint (`NOT VALID`, then validated), an index
(`CONCURRENTLY`), what the source dropped; each statement recorded in the ledger first. The subscription's apply,
stopped at the first row that needed the change, resumes by itself: nothing is lost (the slot keeps the rows).

A table added to the source in scope is created on the target (`copy_schema`, only the tables it lacks),
published (`create_publication`) and subscribed, its rows copied (`refresh_subscription`): the steps D-day's
scope step runs, here within the interval, beside the carry. What it does not carry by itself (a type change that
is not a widening) fails the run, named with its statement; so does every change with
`replication.ddl: refuse`. Outside the window every step is skipped. Active from the start, like the pre-flight;
every pre-flight (and D-day's) also fails on any schema difference.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from ferry.operators.replication import ReplicationCreatePublicationOperator, ReplicationRefreshSubscriptionOperator
from ferry.operators.schema import ReplicationCarrySchemaOperator, ReplicationCopySchemaOperator
from ferry.plan import load_plan
from ferry.taskgroups import dry_run_param, ferry_dag_args

plan = load_plan()

with DAG(
    schedule=timedelta(seconds=plan.replication.ddl_watch_interval_s),
    is_paused_upon_creation=False,
    **ferry_dag_args("ferry_schema_watch", __doc__, "watch", retry_delay_s=10, params={"dry_run": dry_run_param()}),
):
    ReplicationCarrySchemaOperator(
        task_id="carry_schema_changes",
        doc_md="Compares the schemas of the tables in scope; carries each difference to the target (replication.ddl: "
        "carry) or fails naming them (refuse). Skipped outside the replication window. Target side only: nothing to "
        "undo on the source.",
    )
    # The tables added to the source, beside it: brought in even when a change the watch cannot carry fails it.
    (
        ReplicationCopySchemaOperator(
            task_id="copy_schema",
            in_window_only=True,
            doc_md="Creates on the target the tables in scope added to the source since the schema copy (skipped "
            "outside the replication window, and with replication.ddl: refuse). Undone by: "
            "ReplicationDropCopiedSchemaOperator (ferry_rollback).",
        )
        >> ReplicationCreatePublicationOperator(
            task_id="create_publication", doc_md="Publishes them (the publication follows the scope)."
        )
        >> ReplicationRefreshSubscriptionOperator(
            task_id="refresh_subscription",
            doc_md="Subscribes to them; the subscription copies their rows, then streams them.",
        )
    )
