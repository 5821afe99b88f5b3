"""moto servers: one standing in for the AWS APIs (S3, SSM, KMS, Route53, RDS, EKS, ECR, STS), one for
DigitalOcean Spaces (an S3-compatible endpoint of its own, so copies really cross endpoints).

Each is seeded as the real side would be before Ferry runs: on AWS what Terraform made (the ledger
and target buckets, a KMS key, the DNS zone and records, the RDS instance and its parameter group,
the EKS cluster); on Spaces the application's buckets and objects.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable

import boto3
from botocore.config import Config

from stand import profile
from stand.core import ROOT, Stand, conn_json, venv_bin, wait_for_port

REGION = "us-east-1"
KEY_ID, SECRET_KEY = "testing", "testing"  # moto accepts any credentials; these are not secrets
ZONE = "stand.example.com"
OLD_LB, NEW_LB = "old-lb.stand.example.net", "new-lb.stand.example.net"
SOURCE_BUCKETS = {"stand-uploads": 40, "stand-exports": 8}  # bucket: small objects in it


def seed_aws(client: Callable[[str], object]) -> None:
    s3 = client("s3")
    for bucket in ("ferry-stand-ledger", "ferry-stand-webhooks", "stand-uploads-aws", "stand-exports-aws"):
        s3.create_bucket(Bucket=bucket)
    kms = client("kms")
    kms.create_alias(
        AliasName="alias/ferry-stand", TargetKeyId=kms.create_key(Description="ferry stand")["KeyMetadata"]["KeyId"]
    )
    route53 = client("route53")
    zone = route53.create_hosted_zone(Name=ZONE, CallerReference="ferry-stand")["HostedZone"]["Id"]
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"{host}.{ZONE}",
                        "Type": "CNAME",
                        "TTL": 3600,
                        "ResourceRecords": [{"Value": OLD_LB}],
                    },
                }
                for host in ("app", "hooks")
            ]
        },
    )
    rds = client("rds")
    rds.create_db_parameter_group(
        DBParameterGroupName="stand-pg17-logical",
        DBParameterGroupFamily="postgres17",
        Description="logical replication",
    )
    rds.modify_db_parameter_group(
        DBParameterGroupName="stand-pg17-logical",
        Parameters=[
            {"ParameterName": "rds.logical_replication", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}
        ],
    )
    rds.create_db_instance(
        DBInstanceIdentifier="stand-saas",
        Engine="postgres",
        EngineVersion="17.10",
        DBInstanceClass="db.t3.micro",
        MasterUsername="ferry",
        MasterUserPassword="not-a-secret-of-the-stand",
        AllocatedStorage=100,
        DBParameterGroupName="stand-pg17-logical",
        MultiAZ=True,
        BackupRetentionPeriod=7,
    )
    ecr = client("ecr")
    for repository, tag in (("saas-web", "2026.11.20"), ("pgbouncer", "1.23")):
        ecr.create_repository(repositoryName=repository)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "digest": f"sha256:{repository:0<64}"[:71],
                "size": 1,
                "mediaType": "application/vnd.docker.container.image.v1+json",
            },
            "layers": [],
        }
        ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageTag=tag)
    eks = client("eks")
    role = "arn:aws:iam::123456789012:role/stand"
    eks.create_cluster(name="stand", roleArn=role, resourcesVpcConfig={}, version="1.30")
    eks.create_nodegroup(clusterName="stand", nodegroupName="general", nodeRole=role, subnets=["subnet-stand"])


def seed_spaces(client: Callable[[str], object]) -> None:
    s3 = client("s3")
    for bucket, count in SOURCE_BUCKETS.items():
        s3.create_bucket(Bucket=bucket)
        for i in range(count):
            s3.put_object(
                Bucket=bucket,
                Key=f"objects/{i:04d}.json",
                Body=(f'{{"n": {i}}}' * (50 + i)).encode(),
                ContentType="application/json",
                Metadata={"owner": f"customer-{i % 5}"},
            )
    # One object large enough to travel in parts.
    s3.put_object(
        Bucket="stand-exports",
        Key="exports/large.csv",
        Body=b"id,amount\n" + b"1,9.99\n" * 3_000_000,
        ContentType="text/csv",
    )


class Moto:
    """A moto server on a loopback port of the stand, seeded once."""

    def __init__(
        self,
        name: str,
        port_offset: int,
        seed: Callable[[Callable[[str], object]], None],
        env_conn: str,
        slow_like_aws: bool = False,
    ):
        self.name, self.port_offset, self.seed, self.env_conn = name, port_offset, seed, env_conn
        self.slow_like_aws = slow_like_aws  # RDS replicas and Route53 changes as slow as the stand's profile

    def endpoint(self, stand: Stand) -> str:
        return f"http://127.0.0.1:{stand.port(self.port_offset)}"

    def client(self, stand: Stand, service: str, config: Config | None = None) -> object:
        return boto3.client(
            service,
            endpoint_url=self.endpoint(stand),
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET_KEY,
            config=config,
        )

    def up(self, stand: Stand) -> None:
        if not self.healthy(stand):
            # moto_server, with its heap frozen out of the garbage collector (see stand.services.moto_server)
            stand.start_process(
                self.name,
                [venv_bin("python"), "-m", "stand.services.moto_server", "-H", "127.0.0.1", "-p"]
                + [str(stand.port(self.port_offset))],
                env={"PYTHONPATH": str(ROOT / "include")} | (profile.moto_env() if self.slow_like_aws else {}),
            )
            wait_for_port(stand.port(self.port_offset), what=f"moto_server ({self.name})")
        if not stand.state().get(f"{self.name}_seeded"):
            self.seed(lambda service: self.client(stand, service))
            stand.save_state(**{f"{self.name}_seeded": True})

    def healthy(self, stand: Stand) -> bool:
        if not stand.process_alive(self.name):
            return False
        try:
            with urllib.request.urlopen(self.endpoint(stand) + "/", timeout=5):  # S3 ListBuckets: cheap
                return True
        except (urllib.error.URLError, OSError):
            return False

    def env(self, stand: Stand) -> dict[str, str]:
        return {
            f"AIRFLOW_CONN_{self.env_conn.upper()}": conn_json(
                conn_type="aws",
                login=KEY_ID,
                password=SECRET_KEY,
                extra={"endpoint_url": self.endpoint(stand), "region_name": REGION},
            ),
        }

    def down(self, stand: Stand) -> None:
        stand.stop_process(self.name)


class AwsMoto(Moto):
    def env(self, stand: Stand) -> dict[str, str]:
        return super().env(stand) | {
            "AWS_ENDPOINT_URL": self.endpoint(stand),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }
