"""Storage operators: copy the plan's Spaces buckets to S3 ahead of D-day, incrementally, verified."""

from __future__ import annotations

import re
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowFailException
from botocore.config import Config

from ferry.operators.base import FerryOperator
from ferry.operators.preflight import report_dir
from ferry.storage import MiB, sync_bucket


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
        for pair in storage.buckets:
            report = sync_bucket(
                src,
                pair.source,
                dst,
                pair.target,
                workers=self.workers,
                part_size=self.part_size_mib * MiB,
                progress=self.log.info,
                dry_run=self.is_dry_run(context),
            )
            if report.to_copy is not None:  # a dry run: counted, not copied
                if report.to_copy:
                    self.would(context, "sync_bucket", f"s3:{pair.target}", None, {"objects": report.to_copy})
                continue
            if report.copied:
                self.record(
                    context,
                    "sync_bucket",
                    f"s3:{pair.target}",
                    None,
                    {"source": pair.source, "copied": report.copied, "bytes": report.copied_bytes},
                )
            reports.append(report.to_dict())
        if self.is_dry_run(context):
            return []
        lines = [
            "# Ferry storage sync",
            "",
            "| source | target | objects | copied | skipped | failed | verified | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['source']} | {r['target']} | {r['objects']} | {r['copied']} | {r['skipped']} | {len(r['failed'])} "
            f"| {r['verified']} | {r['seconds']} |"
            for r in reports
        ]
        for r in reports:
            lines += [f"- failed {f['key']}: {f['error']}" for f in r["failed"]]
            lines += [f"- does not verify: {k}" for k in r["mismatched"]]
        path = (
            report_dir(self.plan)
            / "storage"
            / f"{context['dag'].dag_id}__{re.sub(r'[^A-Za-z0-9_.-]', '_', context['run_id'])}.md"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        self.log.info("Storage report written to %s\n%s", path, "\n".join(lines))
        bad = [r["target"] for r in reports if r["failed"] or r["mismatched"] or r["verified"] != r["objects"]]
        if bad:
            raise AirflowFailException(
                f"objects failed or do not verify in {', '.join(bad)}; see {path}. Re-run to retry them."
            )
        return reports
