"""RDS and EKS operators: read replicas (and their removal), and the review of the AWS production side."""

from __future__ import annotations

import re
from typing import Any

from airflow.providers.amazon.aws.hooks.eks import EksHook
from airflow.providers.amazon.aws.hooks.rds import RdsHook
from airflow.sdk.exceptions import AirflowFailException

from ferry.operators.base import FerryOperator
from ferry.operators.preflight import report_dir


def describe_instance(rds: RdsHook, instance_id: str) -> dict[str, Any] | None:
    try:
        return rds.conn.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]
    except rds.conn.exceptions.DBInstanceNotFoundFault:
        return None


class RdsCreateReadReplicasOperator(FerryOperator):
    """Create the plan's read replicas of the RDS instance and wait until each is available.

    A replica that already exists with the right source is kept; one with another source fails
    the task. Inverse: RdsDeleteReadReplicasOperator.

    :param check_interval: seconds between availability checks.
    """

    def __init__(self, *, check_interval: int = 30, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_interval = check_interval

    def execute(self, context: Any) -> dict[str, str]:
        plan = self.plan
        if plan.rds is None:
            raise AirflowFailException("the plan has no rds section")
        rds = RdsHook(aws_conn_id=plan.aws.conn_id)
        if describe_instance(rds, plan.rds.instance_id) is None:
            raise AirflowFailException(f"rds.instance_id: RDS instance {plan.rds.instance_id} does not exist")
        for i, replica in enumerate(plan.rds.read_replicas):
            existing = describe_instance(rds, replica.id)
            if existing is None:
                continue
            source = existing.get("ReadReplicaSourceDBInstanceIdentifier")
            if source != plan.rds.instance_id:
                raise AirflowFailException(
                    f"rds.read_replicas[{i}].id: {replica.id} exists but replicates {source!r}, not {plan.rds.instance_id}; "
                    "rename the replica in the plan or remove that instance"
                )
        endpoints = {}
        for replica in plan.rds.read_replicas:
            if describe_instance(rds, replica.id) is None:
                if self.would(context, "create_read_replica", f"rds:{replica.id}", None, replica.instance_class):
                    continue
                self.record(
                    context,
                    "create_read_replica",
                    f"rds:{replica.id}",
                    None,
                    {"source": plan.rds.instance_id, "instance_class": replica.instance_class},
                )
                rds.conn.create_db_instance_read_replica(
                    DBInstanceIdentifier=replica.id,
                    SourceDBInstanceIdentifier=plan.rds.instance_id,
                    DBInstanceClass=replica.instance_class,
                    Tags=[{"Key": "ferry:plan", "Value": plan.name}],
                )
                self.log.info("Creating read replica %s of %s", replica.id, plan.rds.instance_id)
            else:
                self.log.info("Read replica %s of %s already exists", replica.id, plan.rds.instance_id)
            rds.wait_for_db_instance_state(replica.id, target_state="available", check_interval=self.check_interval)
            endpoint = describe_instance(rds, replica.id)["Endpoint"]
            endpoints[replica.id] = f"{endpoint['Address']}:{endpoint['Port']}"
            self.log.info("Read replica %s available at %s", replica.id, endpoints[replica.id])
        return endpoints


class RdsDeleteReadReplicasOperator(FerryOperator):
    """Delete the read replicas Ferry created (inverse of RdsCreateReadReplicasOperator), per the ledger.

    :param check_interval: seconds between checks that a replica is gone.
    """

    def __init__(self, *, check_interval: int = 30, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_interval = check_interval

    def execute(self, context: Any) -> list[str]:
        rds = RdsHook(aws_conn_id=self.plan.aws.conn_id)
        created = {r.target.removeprefix("rds:") for r in self.ledger.records(action="create_read_replica")}
        deleted = []
        for replica_id in sorted(created):
            instance = describe_instance(rds, replica_id)
            if instance is None or instance["DBInstanceStatus"] == "deleting":
                self.log.info("Read replica %s is already gone", replica_id)
                continue
            if self.would(context, "delete_read_replica", f"rds:{replica_id}", instance["DBInstanceStatus"]):
                continue
            self.record(
                context, "delete_read_replica", f"rds:{replica_id}", {"status": instance["DBInstanceStatus"]}, None
            )
            rds.conn.delete_db_instance(
                DBInstanceIdentifier=replica_id, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            )
            rds.conn.get_waiter("db_instance_deleted").wait(
                DBInstanceIdentifier=replica_id, WaiterConfig={"Delay": self.check_interval, "MaxAttempts": 120}
            )
            self.log.info("Read replica %s deleted", replica_id)
            deleted.append(replica_id)
        return deleted


class AwsReviewInfrastructureOperator(FerryOperator):
    """Review the AWS production side before the migration: blocking items fail the task, warnings do not.

    RDS: instance available, engine PostgreSQL of at least the source's major version, parameter
    group with ``rds.logical_replication=1``, storage at least twice the source database, Multi-AZ,
    automated backups. EKS: cluster and node groups ACTIVE, with their versions.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        plan = self.plan
        blocking, warnings, facts = [], [], []
        if plan.rds:
            rds = RdsHook(aws_conn_id=plan.aws.conn_id)
            db = describe_instance(rds, plan.rds.instance_id)
            if db is None:
                blocking.append(f"rds.instance_id: RDS instance {plan.rds.instance_id} does not exist")
            else:
                facts.append(
                    f"RDS {db['DBInstanceIdentifier']}: {db['DBInstanceStatus']}, {db['Engine']} {db['EngineVersion']}, "
                    f"{db['AllocatedStorage']} GiB, Multi-AZ {db['MultiAZ']}, backups {db['BackupRetentionPeriod']} days"
                )
                if db["DBInstanceStatus"] != "available":
                    blocking.append(f"RDS instance is {db['DBInstanceStatus']}, not available")
                source_major = self.source.get_replication_settings()["server_version_num"] // 10000
                if db["Engine"] != "postgres" or int(db["EngineVersion"].split(".")[0]) < source_major:
                    blocking.append(
                        f"RDS runs {db['Engine']} {db['EngineVersion']}; the source is PostgreSQL {source_major}"
                    )
                groups = [g["DBParameterGroupName"] for g in db.get("DBParameterGroups", [])]
                wanted_group = plan.rds.parameter_group or (groups[0] if groups else None)
                if plan.rds.parameter_group and plan.rds.parameter_group not in groups:
                    blocking.append(f"rds.parameter_group: the instance uses {groups}, not {plan.rds.parameter_group}")
                if wanted_group and self._logical_replication(rds, wanted_group) != "1":
                    blocking.append(
                        f"parameter group {wanted_group} lacks rds.logical_replication = 1 (set it and reboot)"
                    )
                size = self.source.get_first("SELECT pg_database_size(current_database())")[0]
                if db["AllocatedStorage"] * 1024**3 < 2 * size:
                    warnings.append(
                        f"RDS storage {db['AllocatedStorage']} GiB is under twice the source database ({size / 1024**3:.1f} GiB)"
                    )
                if not db["MultiAZ"]:
                    warnings.append("RDS instance is not Multi-AZ")
                if not db["BackupRetentionPeriod"]:
                    warnings.append("RDS automated backups are off (BackupRetentionPeriod 0)")
        if plan.eks:
            eks = EksHook(aws_conn_id=plan.aws.conn_id)
            try:
                cluster = eks.describe_cluster(plan.eks.cluster)["cluster"]
            except eks.conn.exceptions.ResourceNotFoundException:
                blocking.append(f"eks.cluster: EKS cluster {plan.eks.cluster} does not exist")
            else:
                facts.append(f"EKS {cluster['name']}: {cluster['status']}, Kubernetes {cluster.get('version')}")
                if cluster["status"] != "ACTIVE":
                    blocking.append(f"EKS cluster {cluster['name']} is {cluster['status']}")
                for i, name in enumerate(plan.eks.nodegroups):
                    try:
                        ng = eks.describe_nodegroup(plan.eks.cluster, name)["nodegroup"]
                    except eks.conn.exceptions.ResourceNotFoundException:
                        blocking.append(f"eks.nodegroups[{i}]: node group {name} does not exist")
                        continue
                    facts.append(f"EKS node group {name}: {ng['status']}, version {ng.get('version')}")
                    if ng["status"] != "ACTIVE":
                        blocking.append(f"EKS node group {name} is {ng['status']}")
        lines = [f"# Ferry AWS review: {'BLOCKED' if blocking else 'READY'}", ""]
        lines += [f"- {f}" for f in facts]
        lines += ["", "## Blocking", ""] + [f"- {b}" for b in blocking] if blocking else []
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings] if warnings else []
        path = (
            report_dir(plan)
            / "aws"
            / f"{context['dag'].dag_id}__{re.sub(r'[^A-Za-z0-9_.-]', '_', context['run_id'])}.md"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        self.log.info("AWS review written to %s\n%s", path, "\n".join(lines))
        if blocking:
            raise AirflowFailException("AWS side not ready: " + "; ".join(blocking))
        return {"ready": True, "warnings": warnings, "report_path": str(path)}

    @staticmethod
    def _logical_replication(rds: RdsHook, group: str) -> str | None:
        for page in rds.conn.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=group):
            for p in page["Parameters"]:
                if p["ParameterName"] == "rds.logical_replication":
                    return p.get("ParameterValue")
        return None
