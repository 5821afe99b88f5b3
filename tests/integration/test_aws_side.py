"""The AWS-side operators over HTTP against the stand's moto server: each, its inverse, each run twice."""

from __future__ import annotations

import io
import json

import boto3

from ferry.hooks.storage import MiB, sync_bucket
from ferry.ledger import Ledger
from ferry.plan import load_plan
from tests.integration.conftest import TEST_DAGS, aws, run_dag, twice


def records(stand) -> dict[str, tuple[str, int]]:
    route53 = aws(stand, "route53")
    zone = route53.list_hosted_zones_by_name(DNSName="stand.example.com.")["HostedZones"][0]["Id"]
    return {
        r["Name"]: (r["ResourceRecords"][0]["Value"], r["TTL"])
        for r in route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        if r["Type"] == "CNAME"
    }


def test_dns_lower_switch_restore_each_twice(stand):
    app, hooks = "app.stand.example.com.", "hooks.stand.example.com."
    original = records(stand)
    assert original[app] == ("old-lb.stand.example.net", 3600)

    assert twice("ferry_test_dns_lower_ttl") == 2
    assert records(stand)[app] == ("old-lb.stand.example.net", 60)
    assert twice("ferry_test_dns_switch") == 2
    assert records(stand)[app] == records(stand)[hooks] == ("new-lb.stand.example.net", 60)
    assert twice("ferry_test_dns_restore") == 2
    assert records(stand) == original


def test_dns_mistakes_fail_before_anything_changes(stand, mistaken_plan, capfd):
    original = records(stand)

    def elsewhere(plan: dict) -> None:
        plan["dns"]["zone"] = "nowhere.example.com"
        for record in plan["dns"]["records"]:
            record["name"] = record["name"].replace("stand.example.com", "nowhere.example.com")
        plan["webhooks"]["host"] = "hooks.nowhere.example.com"

    mistaken_plan(elsewhere)
    capfd.readouterr()
    assert run_dag(TEST_DAGS, "ferry_test_dns_switch").state == "failed"
    assert "dns.zone: hosted zone nowhere.example.com does not exist" in "".join(capfd.readouterr())

    mistaken_plan(lambda d: d["dns"]["records"][1].update(old_value="somewhere-else.example.net"))
    assert run_dag(TEST_DAGS, "ferry_test_dns_switch").state == "failed"
    out = "".join(capfd.readouterr())
    assert "dns.records[1].old_value: hooks.stand.example.com CNAME holds 'old-lb.stand.example.net'" in out
    assert records(stand) == original  # not even the first, correct record was switched


def test_ssm_phases_applied_and_restored_each_twice_without_leaking(stand, stand_secrets, capfd):
    ssm = aws(stand, "ssm")
    url, host = "/stand/production/DATABASE_URL", "/stand/production/DATABASE_HOST"
    capfd.readouterr()

    assert twice("ferry_test_ssm_apply", {"phase": "staging"}) == 3
    assert (
        ssm.get_parameter(Name=url, WithDecryption=True)["Parameter"]["Value"] == "postgres://staging-db.internal/saas"
    )
    assert twice("ferry_test_ssm_apply", {"phase": "production"}) == 3
    production = ssm.get_parameter(Name=url, WithDecryption=True)["Parameter"]
    assert production["Type"] == "SecureString"
    assert stand.secret("app_role") in production["Value"]  # the new database's URL, from the Airflow connection
    assert ssm.get_parameter(Name=host)["Parameter"]["Value"] == f"127.0.0.1:{stand.port(2)}"

    assert twice("ferry_test_ssm_restore", {"phase": "production"}) == 3
    assert (
        ssm.get_parameter(Name=url, WithDecryption=True)["Parameter"]["Value"] == "postgres://staging-db.internal/saas"
    )
    assert twice("ferry_test_ssm_restore", {"phase": "staging"}) == 3
    assert ssm.get_parameters_by_path(Path="/stand", Recursive=True)["Parameters"] == []

    logs = "".join(capfd.readouterr())
    assert "DATABASE_URL: version 1 -> version 2 (SecureString, value ***)" in logs
    ledger = json.dumps([r.__dict__ for r in Ledger(load_plan()).records()])
    for secret in stand_secrets:
        assert secret not in logs
        assert secret not in ledger


def test_ssm_unknown_kms_key_fails_before_anything_is_written(stand, mistaken_plan, capfd):
    mistaken_plan(lambda d: d["ssm"].update(kms_key_id="alias/no-such-key"))
    capfd.readouterr()
    assert run_dag(TEST_DAGS, "ferry_test_ssm_apply", {"phase": "production"}).state == "failed"
    assert "ssm.kms_key_id: KMS key alias/no-such-key does not exist" in "".join(capfd.readouterr())
    assert aws(stand, "ssm").get_parameters_by_path(Path="/stand", Recursive=True)["Parameters"] == []


def spaces(stand):
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{stand.port(6)}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_spaces_buckets_copied_to_s3_verified_and_a_rerun_copies_nothing(stand, capfd):
    src, dst = spaces(stand), aws(stand, "s3")
    capfd.readouterr()
    assert twice("ferry_test_storage_sync") == 2  # one ledger record per bucket pair, on the first run only
    logs = "".join(capfd.readouterr())
    assert "stand-uploads -> stand-uploads-aws: copied 40" in logs
    assert "stand-exports -> stand-exports-aws: copied 9" in logs
    assert "stand-exports -> stand-exports-aws: copied 0 (0.0 MiB), skipped 9, failed 0; verified 9/9" in logs

    for bucket, target in (("stand-uploads", "stand-uploads-aws"), ("stand-exports", "stand-exports-aws")):
        keys = sorted(o["Key"] for o in src.list_objects_v2(Bucket=bucket)["Contents"])
        assert sorted(o["Key"] for o in dst.list_objects_v2(Bucket=target)["Contents"]) == keys
    large = dst.head_object(Bucket="stand-exports-aws", Key="exports/large.csv")
    assert large["ContentLength"] == src.head_object(Bucket="stand-exports", Key="exports/large.csv")["ContentLength"]
    assert "-" in large["ETag"]  # it travelled in parts
    assert large["ContentType"] == "text/csv"
    assert (
        dst.get_object(Bucket="stand-exports-aws", Key="exports/large.csv")["Body"].read()
        == src.get_object(Bucket="stand-exports", Key="exports/large.csv")["Body"].read()
    )
    small = dst.head_object(Bucket="stand-uploads-aws", Key="objects/0003.json")
    assert small["ContentType"] == "application/json" and small["Metadata"]["owner"] == "customer-3"

    # An object changed on the source since: the next run copies exactly that one.
    src.put_object(
        Bucket="stand-uploads", Key="objects/0003.json", Body=b'{"n": "changed"}', ContentType="application/json"
    )
    capfd.readouterr()
    assert run_dag(TEST_DAGS, "ferry_test_storage_sync").state == "success"
    assert "stand-uploads -> stand-uploads-aws: copied 1 " in "".join(capfd.readouterr())
    assert dst.get_object(Bucket="stand-uploads-aws", Key="objects/0003.json")["Body"].read() == b'{"n": "changed"}'


class CorruptingReads:
    """A source client whose whole-object reads lose a byte on the way (a faked network failure)."""

    def __init__(self, client) -> None:
        self.client = client

    def __getattr__(self, name):
        return getattr(self.client, name)

    def get_object(self, **kwargs):
        got = self.client.get_object(**kwargs)
        if "Range" not in kwargs:
            body = got["Body"].read()
            got["Body"] = io.BytesIO(body[:-1] + bytes([body[-1] ^ 1]))
        return got


def test_bytes_that_do_not_match_the_sources_checksum_are_reported_and_never_kept(stand):
    """An object read whole whose bytes do not match the source's ETag (its MD5) fails, named, and the
    target never gets it; a large object travels in parts uploaded in parallel, each with its Content-MD5,
    and its assembled ETag is checked; the next run with sound reads copies what failed and verifies."""
    src, dst = spaces(stand), aws(stand, "s3")
    src.create_bucket(Bucket="checksum-src")
    dst.create_bucket(Bucket="checksum-dst")
    try:
        src.put_object(Bucket="checksum-src", Key="small.bin", Body=b"x" * 1000)
        src.put_object(Bucket="checksum-src", Key="large.bin", Body=bytes(range(256)) * 4096 * 12)  # 12 MiB
        sizes = {"part_size": 5 * MiB, "threshold": 5 * MiB, "progress": lambda m: None}
        report = sync_bucket(CorruptingReads(src), "checksum-src", dst, "checksum-dst", workers=4, **sizes)
        assert [f["key"] for f in report.failed] == ["small.bin"], report.failed
        assert "ChecksumMismatch" in report.failed[0]["error"] and report.copied == 1 and not report.ok
        assert [o["Key"] for o in dst.list_objects_v2(Bucket="checksum-dst")["Contents"]] == ["large.bin"]
        assert dst.head_object(Bucket="checksum-dst", Key="large.bin")["ETag"].strip('"').endswith("-3")

        again = sync_bucket(src, "checksum-src", dst, "checksum-dst", workers=4, **sizes)
        assert again.ok and again.copied == 1 and again.skipped == 1 and again.verified == 2
        assert dst.get_object(Bucket="checksum-dst", Key="small.bin")["Body"].read() == b"x" * 1000
    finally:
        for client, bucket in ((src, "checksum-src"), (dst, "checksum-dst")):
            for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=bucket)


def test_read_replicas_created_then_deleted_each_twice(stand):
    rds = aws(stand, "rds")
    assert twice("ferry_test_rds_replicas") == 1
    replica = rds.describe_db_instances(DBInstanceIdentifier="stand-saas-replica-1")["DBInstances"][0]
    assert replica["DBInstanceStatus"] == "available"
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == "stand-saas"
    assert twice("ferry_test_rds_replicas_delete") == 1
    assert [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]] == ["stand-saas"]


def test_review_passes_on_the_stand_and_blocks_without_logical_replication(stand, mistaken_plan, capfd):
    capfd.readouterr()
    assert run_dag(TEST_DAGS, "ferry_test_aws_review").state == "success"
    out = "".join(capfd.readouterr())
    assert "# Ferry AWS review: READY" in out
    assert "EKS node group general: ACTIVE" in out

    rds = aws(stand, "rds")
    rds.create_db_parameter_group(
        DBParameterGroupName="plain-pg17", DBParameterGroupFamily="postgres17", Description="x"
    )
    rds.modify_db_instance(DBInstanceIdentifier="stand-saas", DBParameterGroupName="plain-pg17", ApplyImmediately=True)
    try:
        mistaken_plan(lambda d: d["rds"].update(parameter_group="plain-pg17"))
        assert run_dag(TEST_DAGS, "ferry_test_aws_review").state == "failed"
        assert "parameter group plain-pg17 lacks rds.logical_replication = 1" in "".join(capfd.readouterr())
    finally:
        rds.modify_db_instance(
            DBInstanceIdentifier="stand-saas", DBParameterGroupName="stand-pg17-logical", ApplyImmediately=True
        )
        rds.delete_db_parameter_group(DBParameterGroupName="plain-pg17")


def test_no_secret_of_the_plan_in_the_whole_ledger(stand, stand_secrets):
    """Runs after every AWS-side operator above (and the replication ones, in the same session)."""
    plan = load_plan()
    ledger = Ledger(plan)
    text = json.dumps([r.__dict__ for r in ledger.records()])
    assert len(ledger.records()) > 10
    for secret in stand_secrets:
        assert secret not in text


def test_weighted_switch_in_steps_then_restore(stand):
    original = records(stand)
    plan = load_plan()
    before = len(Ledger(plan).records(action="weight_step"))
    assert twice("ferry_test_dns_weighted") == 8  # per record: the switch and three steps
    assert [r.after for r in Ledger(plan).records(action="weight_step")][before:] == [25, 50, 100, 25, 50, 100]
    assert all(value == ("new-lb.stand.example.net", 60) for value in records(stand).values())
    assert twice("ferry_test_dns_restore") == 2
    assert records(stand) == original
