"""Benchmark Ferry's bucket sync: parallel against one object at a time, then a re-run.

Starts its own moto server on loopback, fills a bucket with 1,000 objects of 64 KiB and 3 of
50 MiB, copies it to an empty bucket one object at a time, then to another empty bucket with the
operator's default pool, then re-runs the parallel copy (which must copy nothing). Its last line
is a key=value summary. Run: ``make bench-s3sync``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "include")]

from botocore.config import Config  # noqa: E402

from ferry.hooks.storage import MiB, sync_bucket  # noqa: E402
from stand.core import Stand  # noqa: E402
from stand.services.moto import AwsMoto  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="objects of 64 KiB")
    parser.add_argument("--large", type=int, default=3, help="objects of 50 MiB")
    parser.add_argument("--workers", type=int, default=16, help="the parallel run's pool (the operator's default)")
    args = parser.parse_args()
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    stand = Stand(dir=Path("/tmp/ferry-bench-s3sync"), port_base=27320)
    moto = AwsMoto("moto", 5, lambda client: None, "aws_default")
    moto.down(stand)
    stand.remove()
    stand.dir.mkdir(parents=True)
    moto.up(stand)
    try:
        s3 = moto.client(stand, "s3", Config(max_pool_connections=args.workers * 2))
        for bucket in ("source", "one-at-a-time", "parallel"):
            s3.create_bucket(Bucket=bucket)
        started = time.monotonic()
        small = os.urandom(64 * 1024)
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda i: s3.put_object(
                        Bucket="source", Key=f"small/{i:05d}.bin", Body=small, ContentType="application/octet-stream"
                    ),
                    range(args.small),
                )
            )
        large = os.urandom(50 * MiB)
        for i in range(args.large):
            s3.upload_fileobj(io.BytesIO(large), "source", f"large/{i}.bin")
        total = args.small * 64 * 1024 + args.large * 50 * MiB
        print(
            f"source bucket: {args.small} x 64 KiB + {args.large} x 50 MiB = {total / MiB:.0f} MiB, "
            f"filled in {time.monotonic() - started:.1f} s"
        )
        quiet = lambda message: None  # noqa: E731

        serial = sync_bucket(s3, "source", s3, "one-at-a-time", workers=1, progress=quiet)
        parallel = sync_bucket(s3, "source", s3, "parallel", workers=args.workers, progress=quiet)
        rerun = sync_bucket(s3, "source", s3, "parallel", workers=args.workers, progress=quiet)
        for name, r in (("one at a time", serial), (f"parallel ({args.workers})", parallel), ("re-run", rerun)):
            print(
                f"  {name:<14}: copied {r.copied:>5} objects ({r.copied_bytes / MiB:6.1f} MiB) skipped {r.skipped:>5} "
                f"in {r.seconds:6.2f} s; verified {r.verified}/{r.objects}; failed {len(r.failed)}"
            )
        ok = all(r.ok for r in (serial, parallel, rerun)) and rerun.copied == 0
        print(
            f"objects={args.small + args.large} mib={total / MiB:.0f} serial_s={serial.seconds:.2f} "
            f"parallel_s={parallel.seconds:.2f} ratio_parallel={serial.seconds / parallel.seconds:.2f} "
            f"parallel_mib_per_s={total / MiB / parallel.seconds:.1f} rerun_s={rerun.seconds:.2f} rerun_copied={rerun.copied} "
            f"verified={'yes' if ok else 'NO'}"
        )
        return 0 if ok else 1
    finally:
        moto.down(stand)
        stand.remove()


if __name__ == "__main__":
    sys.exit(main())
