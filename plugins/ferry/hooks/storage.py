"""Copy buckets between two S3-compatible endpoints (DigitalOcean Spaces to S3), incrementally.

An object is copied when the target lacks it, or has another size, or neither its ETag nor the
source ETag Ferry stored on it (``x-amz-meta-ferry-source-etag``; multipart uploads get ETags of
their own) matches. Copies run on a bounded pool of threads; objects above the multipart
threshold travel in ranged parts, read and uploaded in parallel on a second pool of the same size,
so memory stays at one part per thread. Content type, the standard headers and user metadata are kept.

Checksums: an object read whole is checked against the source's ETag when that is its MD5 (a
single-part upload, not under SSE-KMS), and every body sent (object or part) carries its
``Content-MD5``, which S3 checks on arrival; a multipart upload's final ETag (the MD5 of its parts'
MD5s, where ETags are MD5s) is checked against the parts sent. A verification pass then checks every object's size and ETag.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

ETAG_META = "ferry-source-etag"
HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")
MiB = 1024 * 1024


@dataclass
class SyncReport:
    """What one bucket pair's sync did."""

    source: str
    target: str
    objects: int = 0
    bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    to_copy: int | None = None
    failed: list[dict[str, str]] = field(default_factory=list)
    verified: int = 0
    mismatched: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.mismatched and self.verified == self.objects


def list_objects(client: Any, bucket: str) -> dict[str, dict[str, Any]]:
    """Every object of ``bucket``: key -> size and ETag."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = {"size": obj["Size"], "etag": obj["ETag"].strip('"')}
    return found


def same_object(
    target_client: Any, bucket: str, key: str, source: dict[str, Any], target: dict[str, Any] | None
) -> bool:
    """Whether the target's object is the source's (size, then ETag or the ETag Ferry stored on it)."""
    if target is None or target["size"] != source["size"]:
        return False
    if target["etag"] == source["etag"]:
        return True
    head = target_client.head_object(Bucket=bucket, Key=key)
    return head.get("Metadata", {}).get(ETAG_META) == source["etag"]


class ChecksumMismatch(Exception):
    """Bytes read or stored are not the ones expected: the object is reported failed, never kept as copied."""


PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


def _md5(body: bytes) -> tuple[str, str]:
    """The MD5 of ``body``: as hex (an ETag) and as base64 (a Content-MD5 header)."""
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    return digest.hex(), base64.b64encode(digest).decode()


def _etag_is_md5(response: dict[str, Any]) -> bool:
    """Whether a single-part object's ETag is its MD5: not under SSE-KMS or a customer's key."""
    return response.get("ServerSideEncryption") in (None, "AES256") and not response.get("SSECustomerAlgorithm")


def copy_object(
    src: Any,
    src_bucket: str,
    dst: Any,
    dst_bucket: str,
    key: str,
    listed: dict[str, Any],
    part_size: int,
    threshold: int,
    parts_pool: ThreadPoolExecutor | None = None,
) -> int:
    """Copy one object (its headers and metadata too), in ranged parts when large (on ``parts_pool``, in
    parallel, when given); return its size. Raises :class:`ChecksumMismatch` when a checksum disagrees."""
    etag = f'"{listed["etag"]}"'
    if listed["size"] <= threshold:
        got = src.get_object(Bucket=src_bucket, Key=key, IfMatch=etag)
        body = got["Body"].read()
        hex_md5, content_md5 = _md5(body)
        if _etag_is_md5(got) and PLAIN_MD5.match(listed["etag"]) and hex_md5 != listed["etag"]:
            raise ChecksumMismatch(f"{key}: the bytes read have MD5 {hex_md5}, the source's ETag is {listed['etag']}")
        dst.put_object(Bucket=dst_bucket, Key=key, Body=body, ContentMD5=content_md5, **_headers(got, listed["etag"]))
        return got["ContentLength"]
    head = src.head_object(Bucket=src_bucket, Key=key, IfMatch=etag)
    size = head["ContentLength"]
    upload = dst.create_multipart_upload(Bucket=dst_bucket, Key=key, **_headers(head, listed["etag"]))["UploadId"]

    def copy_part(number: int, start: int) -> tuple[int, str, str]:
        end = min(start + part_size, size) - 1
        chunk = src.get_object(Bucket=src_bucket, Key=key, Range=f"bytes={start}-{end}", IfMatch=etag)["Body"].read()
        if len(chunk) != end - start + 1:
            raise ChecksumMismatch(f"{key}: part {number} read {len(chunk)} bytes, expected {end - start + 1}")
        hex_md5, content_md5 = _md5(chunk)
        part = dst.upload_part(
            Bucket=dst_bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk, ContentMD5=content_md5
        )
        return number, part["ETag"], hex_md5

    try:
        ranges = list(enumerate(range(0, size, part_size), start=1))
        if parts_pool is None:
            done = [copy_part(n, s) for n, s in ranges]
        else:
            done = [f.result() for f in [parts_pool.submit(copy_part, n, s) for n, s in ranges]]
        completed = dst.complete_multipart_upload(
            Bucket=dst_bucket,
            Key=key,
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e, _ in done]},
        )
        expected = hashlib.md5(b"".join(bytes.fromhex(m) for _, _, m in done), usedforsecurity=False).hexdigest()
        stored = completed["ETag"].strip('"')
        md5_etags = all(e.strip('"') == m for _, e, m in done)  # not under SSE-KMS, whose ETags are no MD5
        if md5_etags and stored != f"{expected}-{len(done)}":
            raise ChecksumMismatch(
                f"{key}: the target assembled ETag {stored}, the parts sent make {expected}-{len(done)}"
            )
    except BaseException:
        dst.abort_multipart_upload(Bucket=dst_bucket, Key=key, UploadId=upload)
        raise
    return size


def _headers(response: dict[str, Any], etag: str) -> dict[str, Any]:
    """The headers and user metadata to keep, plus the source ETag (multipart copies get ETags of their own)."""
    kept = {h: response[h] for h in HEADERS if response.get(h)}
    kept["Metadata"] = {**response.get("Metadata", {}), ETAG_META: etag}
    return kept


def sync_bucket(
    src: Any,
    src_bucket: str,
    dst: Any,
    dst_bucket: str,
    *,
    workers: int = 16,
    part_size: int = 8 * MiB,
    threshold: int = 16 * MiB,
    progress: Callable[[str], None] = print,
    progress_every_s: float = 5.0,
    dry_run: bool = False,
    before_copy: Callable[[int], None] | None = None,
) -> SyncReport:
    """Copy what ``dst_bucket`` lacks of ``src_bucket``, then verify every object.

    With ``dry_run``, only count what would be copied (``report.to_copy``); nothing is written.
    ``before_copy`` is called with the number of objects to copy before the first is copied (not
    when there is none), so a caller can record its intent first.
    """
    started = time.monotonic()
    report = SyncReport(source=src_bucket, target=dst_bucket)
    source, target = list_objects(src, src_bucket), list_objects(dst, dst_bucket)
    report.objects, report.bytes = len(source), sum(o["size"] for o in source.values())
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferry-sync") as pool,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ferry-sync-part") as parts_pool,
    ):
        unchanged = pool.map(lambda k: same_object(dst, dst_bucket, k, source[k], target.get(k)), list(source))
        todo = [k for k, same in zip(list(source), unchanged, strict=True) if not same]
        report.skipped = len(source) - len(todo)
        progress(
            f"{src_bucket} -> {dst_bucket}: {len(source)} objects ({report.bytes / MiB:.1f} MiB); "
            f"{report.skipped} already there, {len(todo)} to copy"
        )
        if dry_run:
            report.to_copy = len(todo)
            return report
        if todo and before_copy:
            before_copy(len(todo))
        lock, last = threading.Lock(), [time.monotonic()]
        futures = {
            pool.submit(
                copy_object, src, src_bucket, dst, dst_bucket, k, source[k], part_size, threshold, parts_pool
            ): k
            for k in todo
        }
        for future in as_completed(futures):
            key = futures[future]
            try:
                size = future.result()
            except Exception as exc:  # noqa: BLE001 - a failed object is reported; the others go on
                report.failed.append({"key": key, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            with lock:
                report.copied += 1
                report.copied_bytes += size
                if time.monotonic() - last[0] >= progress_every_s:
                    last[0] = time.monotonic()
                    elapsed = last[0] - started
                    progress(
                        f"  {report.copied}/{len(todo)} copied, {report.copied_bytes / MiB:.1f} MiB, "
                        f"{report.copied_bytes / MiB / elapsed:.1f} MiB/s"
                    )
        after = list_objects(dst, dst_bucket)
        checks = pool.map(lambda k: same_object(dst, dst_bucket, k, source[k], after.get(k)), list(source))
        for key, same in zip(list(source), checks, strict=True):
            if same:
                report.verified += 1
            else:
                report.mismatched.append(key)
    report.seconds = round(time.monotonic() - started, 3)
    progress(
        f"{src_bucket} -> {dst_bucket}: copied {report.copied} ({report.copied_bytes / MiB:.1f} MiB), skipped "
        f"{report.skipped}, failed {len(report.failed)}; verified {report.verified}/{report.objects} in {report.seconds:.1f} s"
    )
    return report
