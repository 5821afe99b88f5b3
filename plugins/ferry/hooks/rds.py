"""RDS over the Amazon provider's RdsHook: instances, read replicas and parameter groups."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.rds import RdsHook


class RdsInstanceHook(RdsHook):
    """What Ferry reads and changes of RDS instances (the provider has no read-replica operator).

    :param aws_conn_id: the AWS connection.
    """

    def get_instance(self, instance_id: str) -> dict[str, Any] | None:
        """The instance's description, or None when it does not exist."""
        try:
            return self.conn.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
        except self.conn.exceptions.DBInstanceNotFoundFault:
            return None

    def create_read_replica(self, replica_id: str, source_id: str, instance_class: str, tags: dict[str, str]) -> None:
        """Start creating a read replica of ``source_id`` (wait with ``wait_for_db_instance_state``)."""
        self.conn.create_db_instance_read_replica(
            DBInstanceIdentifier=replica_id,
            SourceDBInstanceIdentifier=source_id,
            DBInstanceClass=instance_class,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    def delete_instance(self, instance_id: str, check_interval: int) -> None:
        """Delete an instance without a final snapshot and wait until it is gone."""
        self.conn.delete_db_instance(
            DBInstanceIdentifier=instance_id, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
        )
        self.conn.get_waiter("db_instance_deleted").wait(
            DBInstanceIdentifier=instance_id, WaiterConfig={"Delay": check_interval, "MaxAttempts": 120}
        )

    def get_parameter_value(self, group: str, name: str) -> str | None:
        """The value of parameter ``name`` in the DB parameter group ``group``, or None when unset."""
        for page in self.conn.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=group):
            for p in page["Parameters"]:
                if p["ParameterName"] == name:
                    return p.get("ParameterValue")
        return None
