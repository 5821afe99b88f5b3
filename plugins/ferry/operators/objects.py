"""Operators for what logical replication does not carry: large objects and materialized views' contents."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException

from ferry.ledger import Action, Target, switched_to_new_side
from ferry.operators.base import FerryOperator


class ReplicationCopyLargeObjectsOperator(FerryOperator):
    """Copy the large objects to the other side with the same OIDs and owners (Ferry's login on one side becomes
    its login on the other), then verify every one by md5.

    D-day (``to_target``): inside the freeze, the source's objects to the target; only those missing on the target
    or whose contents differ, so a re-run copies nothing. The last check before the cutover
    (``drop_subscription_and_sync_sequences``) reads both sides' digests again: an object written on the source
    after this copy (the fence holds tables, not large objects) stops the freeze there.
    The way back (``to_source``, ferry_rollback_after_cutover, the target fenced and the new app stopped): the new
    side's objects to the old source. Either way, an object the copied side no longer has is removed from the
    other, so both hold the same objects.
    Fails naming every object that does not verify. Skipped when ``replication.large_objects`` is ``out_of_scope``.
    Inverse of ``to_target``: ReplicationRemoveCopiedLargeObjectsOperator.

    :param direction: ``to_target`` or ``to_source``.
    """

    def __init__(self, *, direction: str = "to_target", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if direction not in ("to_target", "to_source"):
            raise ValueError(f"direction must be to_target or to_source, not {direction!r}")
        self.objects_direction = direction

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        if plan.replication.large_objects == "out_of_scope":
            self.log.info("Large objects are out of scope (replication.large_objects); none copied")
            return {"copied": 0, "objects": None}
        forward = self.objects_direction == "to_target"
        frm, to = (self.source, self.target) if forward else (self.target, self.source)
        names = ("source", "target") if forward else ("target", "old source")
        src, dst = frm.large_object_digests(), to.large_object_digests()
        # What Ferry's login owns on one side, its login owns on the other (doadmin exists on DigitalOcean only,
        # and the reverse); every other owner (the application's roles) keeps its name.
        source_login = BaseHook.get_connection(plan.source.conn_id).login
        target_login = BaseHook.get_connection(plan.target.conn_id).login
        logins = {source_login: target_login} if forward else {target_login: source_login}
        todo = [oid for oid, lo in src.items() if dst.get(oid, {}).get("md5") != lo["md5"]]
        gone = sorted(set(dst) - set(src))  # removed on the copied side since (an earlier copy's leftovers)
        self.log.info(
            "%d large object(s) on the %s, %d to copy to the %s%s",
            len(src),
            names[0],
            len(todo),
            names[1],
            f", {len(gone)} removed there since" if gone else "",
        )
        where = (
            Target.target(f"{plan.target.database}/large_objects")
            if forward
            else Target.source(f"{plan.source.database}/large_objects")
        )
        wanted = {"oids": todo} | ({"removed": gone} if gone else {})
        if (todo or gone) and not self.would(context, Action.COPY_LARGE_OBJECTS, where, None, wanted):
            with (
                self.changing(context, Action.COPY_LARGE_OBJECTS, where, None, wanted),
                frm.session() as reader,
                to.session(autocommit=False) as writer,
            ):
                for i, oid in enumerate(todo, 1):
                    data = frm.read_large_object(oid, reader)
                    owner = src[oid]["owner"]
                    to.write_large_object(oid, data, logins.get(owner, owner), writer)
                    if i % 100 == 0 or i == len(todo):  # a transaction per hundred: bounded, and progress to log
                        writer.commit()
                        self.log.info("  %d/%d copied", i, len(todo))
                for oid in gone:
                    to.run_template("large_object_unlink", conn=writer, oid=oid)
                writer.commit()
        if self.is_dry_run(context):
            return {"copied": 0, "objects": len(src)}
        wrong = large_object_differences(src, to.large_object_digests())
        if wrong:
            raise AirflowFailException(
                f"{len(wrong)} large object(s) do not verify on the {names[1]}: {wrong[:20]}; run this task again"
            )
        self.log.info("All %d large object(s) verified on the %s (md5)", len(src), names[1])
        return {"copied": len(todo), "removed": len(gone), "objects": len(src)}


def large_object_differences(src: dict[int, dict[str, str]], dst: dict[int, dict[str, str]]) -> list[int]:
    """The OIDs whose contents differ between two sides' digests, or that only one side has."""
    return sorted(oid for oid in set(src) | set(dst) if src.get(oid, {}).get("md5") != dst.get(oid, {}).get("md5"))


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
