"""Storage operators: copy the plan's Spaces buckets to S3 ahead of D-day, incrementally, verified."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowFailException
from botocore.config import Config

from ferry import report
from ferry.hooks.storage import MiB, SyncReport, sync_bucket
from ferry.ledger import Action, Target
from ferry.operators.base import Change, FerryOperator
from ferry.plan import BucketPair


class StorageSyncBucketsOperator(FerryOperator):
    """Copy every bucket pair of the plan (source endpoint to target endpoint); a re-run copies nothing.

    Reads only on the source side, so nothing needs undoing on the old side. Writes a report of
    copied, skipped and failed objects (log and Markdown file); fails when an object failed or does
    not verify.

    :param workers: objects copied at once.
    :param part_size_mib: size of the parts large objects travel in.
    """

    def __init__(self, *, workers: int = 16, part_size_mib: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workers = workers
        self.part_size_mib = part_size_mib

    def execute(self, context: Any) -> list[dict[str, Any]]:
        storage = self.plan.storage
        if storage is None:
            self.log.info("The plan has no storage section")
            return []
        config = Config(max_pool_connections=self.workers * 2, retries={"max_attempts": 5, "mode": "standard"})
        src = S3Hook(aws_conn_id=storage.source_conn_id, config=config).get_conn()
        dst = S3Hook(aws_conn_id=storage.target_conn_id, config=config).get_conn()
        reports = []
        dry = self.is_dry_run(context)
        for pair in storage.buckets:
            synced = self.sync_pair(context, src, dst, pair, dry)
            if synced.to_copy:  # a dry run: counted, not copied
                self.would(context, Action.SYNC_BUCKET, Target.bucket(pair.target), None, {"objects": synced.to_copy})
            reports.append(synced.to_dict())
        if self.is_dry_run(context):
            return []
        path = report.write(self.plan, "storage", context, report.render_storage(reports))
        bad = [r["target"] for r in reports if r["failed"] or r["mismatched"] or r["verified"] != r["objects"]]
        if bad:
            raise AirflowFailException(
                f"objects failed or do not verify in {', '.join(bad)}; see {path}. Re-run to retry them."
            )
        return reports

    def sync_pair(self, context: Any, src: Any, dst: Any, pair: BucketPair, dry: bool) -> SyncReport:
        """Sync one bucket pair; its intent is recorded once the objects to copy are known, before the first."""
        with ExitStack() as stack:
            changes: list[Change] = []

            def intend(objects: int) -> None:
                wanted = {"source": pair.source, "objects": objects}
                target = Target.bucket(pair.target)
                changes.append(stack.enter_context(self.changing(context, Action.SYNC_BUCKET, target, None, wanted)))

            synced = sync_bucket(
                src,
                pair.source,
                dst,
                pair.target,
                workers=self.workers,
                part_size=self.part_size_mib * MiB,
                progress=self.log.info,
                dry_run=dry,
                before_copy=intend,
            )
            for change in changes:
                change.after = {"source": pair.source, "copied": synced.copied, "bytes": synced.copied_bytes}
        return synced
