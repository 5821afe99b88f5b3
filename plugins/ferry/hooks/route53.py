"""Route53 over the Amazon provider's AwsBaseHook (the provider has no Route53 hook)."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook


def fqdn(name: str) -> str:
    return name.rstrip(".") + "."


class Route53Hook(AwsBaseHook):
    """Read and change record sets of a hosted zone, waiting for changes to be INSYNC.

    :param aws_conn_id: the AWS connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "route53"
        super().__init__(*args, **kwargs)

    def get_zone_id(self, zone: str) -> str | None:
        """The id of the public hosted zone named ``zone``, or None."""
        found = self.conn.list_hosted_zones_by_name(DNSName=fqdn(zone), MaxItems="1")["HostedZones"]
        return found[0]["Id"] if found and found[0]["Name"] == fqdn(zone) else None

    def get_record_sets(self, zone_id: str, name: str, record_type: str) -> list[dict[str, Any]]:
        """Every record set ``name``/``record_type`` of the zone: one simple set, or weighted ones."""
        found = self.conn.list_resource_record_sets(
            HostedZoneId=zone_id, StartRecordName=fqdn(name), StartRecordType=record_type, MaxItems="20"
        )["ResourceRecordSets"]
        return [r for r in found if r["Name"] == fqdn(name) and r["Type"] == record_type]

    def get_record(self, zone_id: str, name: str, record_type: str) -> dict[str, Any] | None:
        """The simple (not weighted) record set ``name``/``record_type`` of the zone, or None."""
        simple = [r for r in self.get_record_sets(zone_id, name, record_type) if "SetIdentifier" not in r]
        return simple[0] if simple else None

    def change_records(self, zone_id: str, changes: list[tuple[str, dict[str, Any]]], comment: str) -> str:
        """Apply ``(action, record set)`` changes in one batch (all or nothing); return the change id."""
        batch = {"Comment": comment, "Changes": [{"Action": a, "ResourceRecordSet": r} for a, r in changes]}
        return self.conn.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=batch)["ChangeInfo"]["Id"]

    def upsert_record(self, zone_id: str, record: dict[str, Any], comment: str) -> str:
        """UPSERT ``record`` (a ResourceRecordSet); return the change id."""
        return self.upsert_records(zone_id, [record], comment)

    def upsert_records(self, zone_id: str, records: list[dict[str, Any]], comment: str) -> str:
        """UPSERT ``records`` in one change batch (applied together: one change, one wait for INSYNC); return the
        change id."""
        change = self.conn.change_resource_record_sets(
            HostedZoneId=zone_id,
            ChangeBatch={
                "Comment": comment,
                "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record} for record in records],
            },
        )
        return change["ChangeInfo"]["Id"]

    def wait_for_change_insync(self, change_id: str, delay: int = 5, max_attempts: int = 120) -> None:
        """Wait until the change has propagated to every Route53 name server."""
        self.conn.get_waiter("resource_record_sets_changed").wait(
            Id=change_id, WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts}
        )


def record_set(
    name: str, record_type: str, value: str, ttl: int, weight: tuple[str, int] | None = None
) -> dict[str, Any]:
    """A record set of one value; weighted when ``weight`` is (set identifier, weight)."""
    record = {"Name": fqdn(name), "Type": record_type, "TTL": ttl, "ResourceRecords": [{"Value": value}]}
    if weight:
        record |= {"SetIdentifier": weight[0], "Weight": weight[1]}
    return record


def record_value(record: dict[str, Any] | None) -> str | None:
    """The single value of a simple record set (trailing dot dropped), or None."""
    if not record or not record.get("ResourceRecords"):
        return None
    return record["ResourceRecords"][0]["Value"].rstrip(".")
