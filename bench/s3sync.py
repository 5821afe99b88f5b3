"""Benchmark Ferry's bucket sync: parallel against one object at a time, then a re-run, over a network.

Starts its own moto server on loopback and, in front of it, a latency injector (``stand.latency``:
each request held 30 ms, ``--latency-ms``, as a hop between DigitalOcean and AWS would). Fills a
bucket with 1,000 objects of 64 KiB and 3 of 50 MiB (directly), copies it through the injector to an
empty bucket one object at a time (one part at a time), then to another empty bucket with the
operator's default pool (objects, and a large object's parts, 16 at a time), then re-runs the
parallel copy (which must copy nothing). Every object is checked (checksums on the way, size and
ETag after). Its last line is a key=value summary, ``ok=yes`` when everything verified, the re-run
copied nothing and parallel is at least 8x one at a time; the exit status is non-zero otherwise.
Run: ``make bench-s3sync``.
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

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from ferry.hooks.storage import MiB, sync_bucket  # noqa: E402
from stand.core import Stand  # noqa: E402
from stand.latency import LatencyProxy  # noqa: E402
from stand.services.moto import KEY_ID, REGION, SECRET_KEY, AwsMoto  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="objects of 64 KiB")
    parser.add_argument("--large", type=int, default=3, help="objects of 50 MiB")
    parser.add_argument("--workers", type=int, default=16, help="the parallel run's pool (the operator's default)")
    parser.add_argument("--latency-ms", type=float, default=30, help="held per request (0: none)")
    parser.add_argument("--min-ratio", type=float, default=8, help="parallel over one at a time for ok=yes")
    args = parser.parse_args()
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    stand = Stand(dir=Path("/tmp/ferry-bench-s3sync"), port_base=27320)
    moto = AwsMoto("moto", 5, lambda client: None, "aws_default")
    moto.down(stand)
    stand.remove()
    stand.dir.mkdir(parents=True)
    moto.up(stand)
    proxy = LatencyProxy(stand.port(5), args.latency_ms / 1000).start()
    try:
        s3 = moto.client(stand, "s3", Config(max_pool_connections=args.workers * 2))
        far = boto3.client(  # the same endpoint, through the latency injector
            "s3",
            endpoint_url=proxy.url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET_KEY,
            config=Config(max_pool_connections=args.workers * 4),
        )
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

        print(f"through the latency injector: {args.latency_ms:g} ms held per request")
        held = proxy.requests
        serial = sync_bucket(far, "source", far, "one-at-a-time", workers=1, progress=quiet)
        serial_requests, held = proxy.requests - held, proxy.requests
        parallel = sync_bucket(far, "source", far, "parallel", workers=args.workers, progress=quiet)
        parallel_requests, held = proxy.requests - held, proxy.requests
        rerun = sync_bucket(far, "source", far, "parallel", workers=args.workers, progress=quiet)
        for name, r in (("one at a time", serial), (f"parallel ({args.workers})", parallel), ("re-run", rerun)):
            print(
                f"  {name:<14}: copied {r.copied:>5} objects ({r.copied_bytes / MiB:6.1f} MiB) skipped {r.skipped:>5} "
                f"in {r.seconds:6.2f} s; verified {r.verified}/{r.objects}; failed {len(r.failed)}"
            )
        verified = all(r.ok for r in (serial, parallel, rerun))
        ratio = serial.seconds / parallel.seconds
        ok = verified and rerun.copied == 0 and ratio >= args.min_ratio
        print(
            f"objects={args.small + args.large} mib={total / MiB:.0f} latency_ms={args.latency_ms:g} "
            f"requests_serial={serial_requests} requests_parallel={parallel_requests} serial_s={serial.seconds:.2f} "
            f"parallel_s={parallel.seconds:.2f} ratio_parallel={ratio:.2f} "
            f"parallel_mib_per_s={total / MiB / parallel.seconds:.1f} rerun_s={rerun.seconds:.2f} rerun_copied={rerun.copied} "
            f"verified={'yes' if verified else 'no'} ok={'yes' if ok else 'no'}"
        )
        return 0 if ok else 1
    finally:
        proxy.stop()
        moto.down(stand)
        stand.remove()


if __name__ == "__main__":
    sys.exit(main())
