"""Amazon RDS through boto3: snapshots and their cross-region copies, the instance's automated-backup
settings, restores into new instances, waiting, deletion. Each task makes the calls it names and
returns what the API answered; what to keep or delete is decided in core/rds.py.

botocore retries every call itself (standard mode: throttling, 5xx and dropped connections, with
jittered backoff), with connect and read timeouts, so no call hangs a 02:00 run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config
from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.rds import RdsInstance
from ubertruck_ops.core.rds import InstanceInfo, SnapshotInfo, as_tag_list
from ubertruck_ops.log import logger

RDS_ATTEMPTS = 6
_FAILED_SNAPSHOT = {"failed", "error", "incompatible-restore"}
_FAILED_INSTANCE = {"failed", "incompatible-restore", "incompatible-parameters", "incompatible-network",
                    "incompatible-option-group", "inaccessible-encryption-credentials", "storage-full"}


class RdsError(RuntimeError):
    """An RDS resource ended in a failed state, or did not become available in time."""


def rds_client(block: RdsInstance, region: str | None = None):
    """Return a boto3 RDS client of `region` (default: the block's) with the block's credentials
    and endpoint override, botocore standard retries and timeouts."""
    credentials = block.aws
    params = credentials.aws_client_parameters.get_params_override()
    params["config"] = Config(retries={"max_attempts": RDS_ATTEMPTS, "mode": "standard"}, connect_timeout=10,
                              read_timeout=60)
    params["region_name"] = region or block.region
    return credentials.get_boto3_session().client("rds", **params)


def _tags(item: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("TagList") or []}


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _snapshot_info(item: dict) -> SnapshotInfo:
    return SnapshotInfo(snapshot_id=item["DBSnapshotIdentifier"], instance_id=item.get("DBInstanceIdentifier", ""),
                        created=_utc(item.get("SnapshotCreateTime")), status=item.get("Status", ""),
                        snapshot_type=item.get("SnapshotType", ""), tags=_tags(item),
                        arn=item.get("DBSnapshotArn", ""))


def _wait(what: str, read: Callable[[], tuple[str, str]], failed: set[str], timeout: float, poll: float) -> None:
    """Read (status, progress) every `poll` seconds until available; log each change of status or
    progress. Raise RdsError on a failed status or at `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        status, progress = read()
        if (status, progress) != last:
            logger().info("%s: %s%s", what, status, f" ({progress})" if progress else "")
            last = (status, progress)
        if status == "available":
            return
        if status in failed:
            raise RdsError(f"{what} ended {status}")
        if time.monotonic() >= deadline:
            raise RdsError(f"{what} is still {status} after {timeout:.0f} s: not waiting longer")
        time.sleep(poll)


@task(name="rds-create-snapshot", cache_policy=NO_CACHE)
def create_snapshot(block: RdsInstance, snapshot_id: str, tags: dict[str, str]) -> SnapshotInfo:
    """Ask RDS for a manual snapshot of the block's instance, tagged; return it as first described."""
    answer = rds_client(block).create_db_snapshot(DBSnapshotIdentifier=snapshot_id,
                                                  DBInstanceIdentifier=block.instance_id, Tags=as_tag_list(tags))
    logger().info("RDS snapshot %s of %s requested", snapshot_id, block.instance_id)
    return _snapshot_info(answer["DBSnapshot"])


@task(name="rds-wait-snapshot", cache_policy=NO_CACHE)
def wait_snapshot(block: RdsInstance, snapshot_id: str, region: str | None = None) -> SnapshotInfo:
    """Wait until the snapshot is available (poll and timeout from the block); return it described.
    Raise RdsError when it fails or the timeout passes."""
    client = rds_client(block, region)
    found: dict[str, Any] = {}

    def read() -> tuple[str, str]:
        found["item"] = client.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"][0]
        progress = found["item"].get("PercentProgress")
        return found["item"].get("Status", ""), f"{progress}%" if progress is not None else ""

    _wait(f"snapshot {snapshot_id} in {region or block.region}", read, _FAILED_SNAPSHOT,
          block.snapshot_timeout_seconds, block.poll_seconds)
    return _snapshot_info(found["item"])


@task(name="rds-copy-snapshot", cache_policy=NO_CACHE)
def copy_snapshot(block: RdsInstance, source: SnapshotInfo, tags: dict[str, str]) -> SnapshotInfo:
    """Copy `source` into the block's DR region under the same id, encrypted with the block's KMS
    key, tagged; return the copy as first described (botocore presigns the cross-region request)."""
    params: dict[str, Any] = {"SourceDBSnapshotIdentifier": source.arn, "TargetDBSnapshotIdentifier": source.snapshot_id,
                              "SourceRegion": block.region, "Tags": as_tag_list(tags)}
    if block.kms_key_id:
        params["KmsKeyId"] = block.kms_key_id
    answer = rds_client(block, block.dr_region).copy_db_snapshot(**params)
    logger().info("copy of RDS snapshot %s to %s requested", source.snapshot_id, block.dr_region)
    return _snapshot_info(answer["DBSnapshot"])


@task(name="rds-list-snapshots", cache_policy=NO_CACHE)
def list_snapshots(block: RdsInstance, region: str | None = None) -> list[SnapshotInfo]:
    """Return every manual snapshot of the block's instance in `region` (default: the block's), tags included."""
    client = rds_client(block, region)
    found = []
    for page in client.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=block.instance_id,
                                                                      SnapshotType="manual"):
        found += [_snapshot_info(item) for item in page["DBSnapshots"]]
    return found


@task(name="rds-delete-snapshot", cache_policy=NO_CACHE)
def delete_snapshot(block: RdsInstance, snapshot_id: str, region: str | None = None) -> None:
    """Delete one snapshot."""
    rds_client(block, region).delete_db_snapshot(DBSnapshotIdentifier=snapshot_id)
    logger().info("RDS snapshot %s deleted in %s", snapshot_id, region or block.region)


def _describe(block: RdsInstance, instance_id: str) -> dict:
    return rds_client(block).describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]


@task(name="rds-describe-instance", cache_policy=NO_CACHE)
def describe_instance(block: RdsInstance, instance_id: str | None = None) -> dict:
    """Return what the automated backups and a restore need of an instance (default: the block's):
    status, BackupRetentionPeriod, LatestRestorableTime (UTC, or None), class, subnet group,
    security groups, port."""
    item = _describe(block, instance_id or block.instance_id)
    return {"instance_id": item["DBInstanceIdentifier"], "status": item.get("DBInstanceStatus", ""),
            "backup_retention_days": item.get("BackupRetentionPeriod"),
            "latest_restorable_time": _utc(item.get("LatestRestorableTime")),
            "instance_class": item.get("DBInstanceClass"),
            "subnet_group": (item.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
            "security_groups": [g["VpcSecurityGroupId"] for g in item.get("VpcSecurityGroups") or []],
            "port": (item.get("Endpoint") or {}).get("Port")}


@task(name="rds-list-instances", cache_policy=NO_CACHE)
def list_instances(block: RdsInstance) -> list[InstanceInfo]:
    """Return every instance of the block's region, tags included."""
    found = []
    for page in rds_client(block).get_paginator("describe_db_instances").paginate():
        found += [InstanceInfo(i["DBInstanceIdentifier"], i.get("DBInstanceStatus", ""),
                               _utc(i.get("InstanceCreateTime")), _tags(i)) for i in page["DBInstances"]]
    return found


def _placement(source: dict, instance_class: str | None, tags: dict[str, str]) -> dict:
    """Where a restored instance lives: the source's network (so this worker reaches it as it reaches
    the source), never public, no deletion protection, no Multi-AZ, tagged."""
    params: dict[str, Any] = {"PubliclyAccessible": False, "MultiAZ": False, "DeletionProtection": False,
                              "Tags": as_tag_list(tags)}
    if instance_class or source.get("instance_class"):
        params["DBInstanceClass"] = instance_class or source["instance_class"]
    if source.get("subnet_group"):
        params["DBSubnetGroupName"] = source["subnet_group"]
    if source.get("security_groups"):
        params["VpcSecurityGroupIds"] = source["security_groups"]
    return params


@task(name="rds-restore-snapshot", cache_policy=NO_CACHE)
def restore_snapshot(block: RdsInstance, snapshot_id: str, target_id: str, source: dict, tags: dict[str, str],
                     instance_class: str | None = None) -> None:
    """Restore `snapshot_id` into the new instance `target_id` (RDS refuses an existing id)."""
    rds_client(block).restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier=target_id, DBSnapshotIdentifier=snapshot_id, **_placement(source, instance_class, tags))
    logger().info("restore of snapshot %s into new instance %s requested", snapshot_id, target_id)


@task(name="rds-restore-point-in-time", cache_policy=NO_CACHE)
def restore_point_in_time(block: RdsInstance, target_id: str, moment: datetime | None, source: dict,
                          tags: dict[str, str], instance_class: str | None = None) -> None:
    """Restore the block's instance as of `moment` (None: its latest restorable time) into the new
    instance `target_id`."""
    when = {"RestoreTime": moment} if moment else {"UseLatestRestorableTime": True}
    rds_client(block).restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=block.instance_id, TargetDBInstanceIdentifier=target_id, **when,
        **_placement(source, instance_class, tags))
    logger().info("point-in-time restore of %s (%s) into new instance %s requested", block.instance_id,
                  moment.isoformat() if moment else "latest restorable time", target_id)


@task(name="rds-wait-instance", cache_policy=NO_CACHE)
def wait_instance(block: RdsInstance, instance_id: str) -> tuple[str, int]:
    """Wait until the instance is available; return its endpoint (address, port). Raise RdsError
    when it fails or the block's restore timeout passes."""
    found: dict[str, Any] = {}

    def read() -> tuple[str, str]:
        found["item"] = _describe(block, instance_id)
        return found["item"].get("DBInstanceStatus", ""), ""

    _wait(f"instance {instance_id}", read, _FAILED_INSTANCE, block.restore_timeout_seconds, block.poll_seconds)
    endpoint = found["item"].get("Endpoint") or {}
    if not endpoint.get("Address"):
        raise RdsError(f"instance {instance_id} is available but reports no endpoint")
    return endpoint["Address"], int(endpoint["Port"])


@task(name="rds-delete-instance", cache_policy=NO_CACHE)
def delete_instance(block: RdsInstance, instance_id: str) -> None:
    """Delete an instance we restored: no final snapshot, its automated backups too. Not waited for."""
    delete_instance_now(block, instance_id)


def delete_instance_now(block: RdsInstance, instance_id: str) -> None:
    """delete_instance without Prefect's task machinery: for `finally` blocks, where the run may be
    being cancelled and no new task run should be needed to clean up."""
    if instance_id.lower() == block.instance_id.lower():
        raise ValueError(f"refusing to delete the source instance {instance_id}")
    rds_client(block).delete_db_instance(DBInstanceIdentifier=instance_id, SkipFinalSnapshot=True,
                                         DeleteAutomatedBackups=True)
    logger().info("instance %s deleted (no final snapshot, automated backups deleted)", instance_id)
