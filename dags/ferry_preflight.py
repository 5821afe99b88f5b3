"""
# ferry_preflight: is the migration ready? (read-only)

Runs on the plan's schedule (hourly by default) and as the first group of every stage DAG.
It **reads everything and changes nothing**. One task per check; each task's log says what it
found and, when it fails, what to do:

| task | checks |
|---|---|
| `check_plan_sections` | the plan has every section the stage needs (in a stage: fails naming the section and the tasks that need it; hourly: warns for every stage) |
| `check_connections` | every Airflow connection the plan names answers |
| `check_source_replication_settings` | source `wal_level=logical`, free replication slots and WAL senders |
| `check_privileges` | Ferry's logins hold every right the plan's steps use, without superuser (SSL sessions, REPLICATION, CREATE, ownership of the tables in scope, `pg_signal_backend`, the sequences and large objects, `pg_create_subscription` on 16+, the extensions); each missing one named with its grant on DigitalOcean and RDS |
| `check_replica_identity` | every table in scope has a primary key or a replica identity (names each offender and the `ALTER TABLE` that fixes it) |
| `check_writers` | every login role that can write a table in scope, and where the right comes from (grant, a role's grant, PUBLIC, ownership, superuser); fails on one the fence cannot hold (a superuser or an owner), warns on `source.keep_writing` |
| `check_schema_drift` | the schema of the tables in scope matches between source and target, once the target has a schema (columns with types, nullability and defaults, a column renamed told from one dropped and one added; constraints; indexes; partitions), each difference named with the statement that makes the target match; after the cutover (reverse replication on), what the reverse replication would not carry back: a column or type changed on the new side only, a table on the target outside the reverse publication, with the fix on each side |
| `check_replication_health` | when the subscription exists: enabled, worker running, apply errors, slot lag, WAL retained against `max_slot_wal_keep_size` |
| `check_leftover_slots` | no replication slot of Ferry's (named after the plan) left behind on either side, with the WAL each keeps |
| `check_reverse_replication` | with `replication.reverse`: before D-day, that it can be set up (the target publishes, the reverse login may replicate, the old source may subscribe, and its own server connects to the target as the subscription will, a probe rolled back); after the cutover, its health (apply worker, errors, lag, WAL kept on the target) |
| `check_sequences` | the sequences in scope, owned or not (they are not replicated) |
| `go_no_go_report` | writes the go/no-go report (log and Markdown file); fails the run on NO-GO. Warnings do not fail it |

A failed check does not retry (its finding will not change by waiting); an unreachable system does.
The DAG is active from the start (the stage DAGs stay paused until triggered), and a failed run is
posted to the plan's `preflight.notify_conn_id` (an HTTP connection: a chat or paging webhook).
The plan comes from the Airflow Variable `ferry_plan` (a path, or the YAML itself), else `$FERRY_PLAN`, else the example.
"""

from __future__ import annotations

from airflow.sdk import DAG

from ferry.notify import notify_failure
from ferry.plan import load_plan
from ferry.taskgroups import ferry_dag_args, preflight_checks

plan = load_plan()

# Active from the start (the stage DAGs stay paused until triggered): a scheduled check that never runs
# warns nobody. A failed run is posted to the plan's notification webhook.
with DAG(
    schedule=plan.preflight.schedule,
    is_paused_upon_creation=False,
    on_failure_callback=notify_failure(plan.preflight.notify_conn_id, plan.preflight.notify_endpoint),
    **ferry_dag_args("ferry_preflight", __doc__, "preflight", "read-only"),
):
    preflight_checks()
