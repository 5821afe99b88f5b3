"""A moto server standing in for the AWS APIs (S3, SSM, Route53, RDS, EKS, ECR, STS) over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request

import boto3

from stand.core import Stand, conn_json, venv_bin, wait_for_port

PORT_OFFSET = 5
REGION = "us-east-1"
LEDGER_BUCKET = "ferry-stand-ledger"  # the stand plan's ledger.bucket: the AWS side exists before Ferry runs
KEY_ID, SECRET_KEY = "testing", "testing"  # moto accepts any credentials; these are not secrets


class Moto:
    name = "moto"

    def endpoint(self, stand: Stand) -> str:
        return f"http://127.0.0.1:{stand.port(PORT_OFFSET)}"

    def up(self, stand: Stand) -> None:
        if not self.healthy(stand):
            stand.start_process(
                self.name, [venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(stand.port(PORT_OFFSET))]
            )
            wait_for_port(stand.port(PORT_OFFSET), what="moto_server")
        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint(stand),
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET_KEY,
        )
        if LEDGER_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=LEDGER_BUCKET)

    def healthy(self, stand: Stand) -> bool:
        if not stand.process_alive(self.name):
            return False
        try:
            with urllib.request.urlopen(self.endpoint(stand) + "/moto-api/data.json", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def env(self, stand: Stand) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_AWS_DEFAULT": conn_json(
                conn_type="aws",
                login=KEY_ID,
                password=SECRET_KEY,
                extra={"endpoint_url": self.endpoint(stand), "region_name": REGION},
            ),
            "AWS_ENDPOINT_URL": self.endpoint(stand),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def down(self, stand: Stand) -> None:
        stand.stop_process(self.name)
