"""Operators for what logical replication does not carry: large objects and materialized views' contents."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from ferry.ledger import Action, Target, switched_to_new_side
from ferry.operators.base import FerryOperator


class ReplicationCopyLargeObjectsOperator(FerryOperator):
    """Copy the source's large objects to the target with the same OIDs and owners (Ferry's source login's become its
    target login's), then verify every one.

    Runs inside the freeze (the application is stopped and fenced). Copies only those missing on the
    target or whose contents differ (md5), so a re-run copies nothing; fails naming every object that
    does not verify. Skipped when ``replication.large_objects`` is ``out_of_scope``.
    Inverse: ReplicationRemoveCopiedLargeObjectsOperator.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        if self.plan.replication.large_objects == "out_of_scope":
            self.log.info("Large objects are out of scope (replication.large_objects); none copied")
            return {"copied": 0, "objects": None}
        source, target = self.source.large_object_digests(), self.target.large_object_digests()
        # What Ferry's source login owns, its target login owns (doadmin exists on DigitalOcean only, and the
        # reverse); every other owner (the application's roles) keeps its name.
        logins = {
            BaseHook.get_connection(self.plan.source.conn_id).login: BaseHook.get_connection(
                self.plan.target.conn_id
            ).login
        }
        todo = [oid for oid, lo in source.items() if target.get(oid, {}).get("md5") != lo["md5"]]
        self.log.info("%d large object(s) on the source, %d to copy", len(source), len(todo))
        where = Target.target(f"{self.plan.target.database}/large_objects")
        if todo and not self.would(context, Action.COPY_LARGE_OBJECTS, where, None, {"oids": todo}):
            with (
                self.changing(context, Action.COPY_LARGE_OBJECTS, where, None, {"oids": todo}),
                self.source.session() as reader,
                self.target.session(autocommit=False) as writer,
            ):
                for i, oid in enumerate(todo, 1):
                    data = self.source.read_large_object(oid, reader)
                    owner = source[oid]["owner"]
                    self.target.write_large_object(oid, data, logins.get(owner, owner), writer)
                    if i % 100 == 0 or i == len(todo):  # a transaction per hundred: bounded, and progress to log
                        writer.commit()
                        self.log.info("  %d/%d copied", i, len(todo))
        if self.is_dry_run(context):
            return {"copied": 0, "objects": len(source)}
        copied = self.target.large_object_digests()
        wrong = [oid for oid, lo in source.items() if copied.get(oid, {}).get("md5") != lo["md5"]]
        if wrong:
            raise AirflowFailException(
                f"{len(wrong)} large object(s) do not verify on the target: {wrong[:20]}; run this task again"
            )
        self.log.info("All %d large object(s) verified on the target (md5)", len(source))
        return {"copied": len(todo), "objects": len(source)}


class ReplicationRemoveCopiedLargeObjectsOperator(FerryOperator):
    """Remove from the target the large objects Ferry copied there (inverse of ReplicationCopyLargeObjectsOperator).

    Refused once D-day has switched the application's DNS to the new side: the target's large objects
    may then hold what the new side wrote.
    """

    def execute(self, context: Any) -> list[int]:
        history = self.ledger.records()
        where = Target.target(f"{self.plan.target.database}/large_objects")
        copies = [r for r in history if r.action == Action.COPY_LARGE_OBJECTS and r.target == where]
        if not copies:
            self.log.info("Ferry copied no large object to the target; nothing to do")
            return []
        switched = switched_to_new_side(self.plan, history, since=copies[0].at)
        if switched is not None:
            raise AirflowFailException(
                f"D-day pointed {switched.target.name} at the new side at {switched.at}: the target's large objects "
                "may hold the new side's writes, so they stay"
            )
        present = self.target.large_object_digests()
        oids = sorted({oid for r in copies for oid in r.after["oids"]} & set(present))
        if not oids:
            self.log.info("None of the large objects Ferry copied is on the target any more")
            return []
        if self.would(context, Action.REMOVE_LARGE_OBJECTS, where, {"oids": oids}, None):
            return []
        with self.changing(context, Action.REMOVE_LARGE_OBJECTS, where, {"oids": oids}, None):
            for oid in oids:
                self.target.unlink_large_object(oid)
        self.log.info("Removed the %d large object(s) Ferry copied to the target", len(oids))
        return oids


class ReplicationRefreshMaterializedViewsOperator(FerryOperator):
    """Refresh every materialized view of the plan's schemas on the target, once it stands alone.

    Replication carries the tables a view reads, not the view's contents (the schema copy leaves it
    unpopulated). Once per D-day run: a re-run of the same run finds its refreshes in the ledger.
    """

    def execute(self, context: Any) -> list[str]:
        views = [v["view"] for v in self.target.get_materialized_views(self.plan.replication.schemas)]
        done = {
            r.target
            for r in self.ledger.records(action=Action.REFRESH_MATVIEW)
            if r.run_id == context["run_id"] and r.done
        }
        refreshed = []
        for view in views:
            target = Target.target(view)
            if target in done:
                self.log.info("%s: refreshed earlier in this run", view)
                continue
            if self.would(context, Action.REFRESH_MATVIEW, target, None, "refreshed"):
                continue
            with self.changing(context, Action.REFRESH_MATVIEW, target, None, "refreshed"):
                self.target.refresh_materialized_view(view)
            self.log.info("%s: refreshed on the target", view)
            refreshed.append(view)
        self.log.info("%d materialized view(s) refreshed: %s", len(refreshed), ", ".join(refreshed) or "none")
        return views
