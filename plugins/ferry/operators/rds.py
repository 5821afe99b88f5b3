"""RDS and EKS operators: read replicas (and their removal), and the review of the AWS production side."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.eks import EksHook
from airflow.sdk.exceptions import AirflowFailException

from ferry import report
from ferry.hooks.rds import RdsInstanceHook
from ferry.ledger import Action, Target
from ferry.operators.base import FerryOperator


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
        rds = RdsInstanceHook(aws_conn_id=plan.aws.conn_id)
        if rds.get_instance(plan.rds.instance_id) is None:
            raise AirflowFailException(f"rds.instance_id: RDS instance {plan.rds.instance_id} does not exist")
        for i, replica in enumerate(plan.rds.read_replicas):
            existing = rds.get_instance(replica.id)
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
            if rds.get_instance(replica.id) is None:
                target = Target.rds(replica.id)
                if self.would(context, Action.CREATE_READ_REPLICA, target, None, replica.instance_class):
                    continue
                wanted = {"source": plan.rds.instance_id, "instance_class": replica.instance_class}
                with self.changing(context, Action.CREATE_READ_REPLICA, target, None, wanted):
                    rds.create_read_replica(
                        replica.id, plan.rds.instance_id, replica.instance_class, {"ferry:plan": plan.name}
                    )
                self.log.info("Creating read replica %s of %s", replica.id, plan.rds.instance_id)
            else:
                self.log.info("Read replica %s of %s already exists", replica.id, plan.rds.instance_id)
            rds.wait_for_db_instance_state(replica.id, target_state="available", check_interval=self.check_interval)
            endpoint = rds.get_instance(replica.id)["Endpoint"]
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
        rds = RdsInstanceHook(aws_conn_id=self.plan.aws.conn_id)
        created = {r.target.name for r in self.ledger.records(action=Action.CREATE_READ_REPLICA)}
        deleted = []
        for replica_id in sorted(created):
            instance = rds.get_instance(replica_id)
            if instance is None or instance["DBInstanceStatus"] == "deleting":
                self.log.info("Read replica %s is already gone", replica_id)
                continue
            target, status = Target.rds(replica_id), {"status": instance["DBInstanceStatus"]}
            if self.would(context, Action.DELETE_READ_REPLICA, target, instance["DBInstanceStatus"]):
                continue
            with self.changing(context, Action.DELETE_READ_REPLICA, target, status, None):
                rds.delete_instance(replica_id, self.check_interval)
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
            rds = RdsInstanceHook(aws_conn_id=plan.aws.conn_id)
            db = rds.get_instance(plan.rds.instance_id)
            if db is None:
                blocking.append(f"rds.instance_id: RDS instance {plan.rds.instance_id} does not exist")
            else:
                facts.append(
                    f"RDS {db['DBInstanceIdentifier']}: {db['DBInstanceStatus']}, {db['Engine']} {db['EngineVersion']}, "
                    f"{db['AllocatedStorage']} GiB, Multi-AZ {db['MultiAZ']}, backups {db['BackupRetentionPeriod']} days"
                )
                if db["DBInstanceStatus"] != "available":
                    blocking.append(f"RDS instance is {db['DBInstanceStatus']}, not available")
                source_major = self.source.server_version_num() // 10000
                if db["Engine"] != "postgres" or int(db["EngineVersion"].split(".")[0]) < source_major:
                    blocking.append(
                        f"RDS runs {db['Engine']} {db['EngineVersion']}; the source is PostgreSQL {source_major}"
                    )
                groups = [g["DBParameterGroupName"] for g in db.get("DBParameterGroups", [])]
                wanted_group = plan.rds.parameter_group or (groups[0] if groups else None)
                if plan.rds.parameter_group and plan.rds.parameter_group not in groups:
                    blocking.append(f"rds.parameter_group: the instance uses {groups}, not {plan.rds.parameter_group}")
                if wanted_group and rds.get_parameter_value(wanted_group, "rds.logical_replication") != "1":
                    blocking.append(
                        f"parameter group {wanted_group} lacks rds.logical_replication = 1 (set it and reboot)"
                    )
                size = self.source.database_size()
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
        path = report.write(plan, "aws", context, report.render_aws_review(facts, blocking, warnings))
        if blocking:
            raise AirflowFailException("AWS side not ready: " + "; ".join(blocking))
        return {"ready": True, "warnings": warnings, "report_path": str(path)}
