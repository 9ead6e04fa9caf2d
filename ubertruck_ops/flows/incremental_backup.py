"""incremental-backup: the six-hourly backup, in the tier the server allows (core/tiers.py).

The story: take the backup lock; read what the server and the blocks say and choose the tier;
refuse clearly when none applies (that environment's six-hourly run is not scheduled at all);
then either the chain's next link on a server with physical access - a base backup, an
incremental (PostgreSQL 17+) or a proven recovery point on the base and the WAL archive (13-16) -
or, on RDS, a manual snapshot and the instance's point-in-time window checked; report.
"""

from __future__ import annotations

from prefect import flow

from ubertruck_ops.core import notices
from ubertruck_ops.core.reports import six_hourly_report
from ubertruck_ops.core.tiers import RDS_SNAPSHOTS, refusal
from ubertruck_ops.operations.backup import BackupAttempt
from ubertruck_ops.operations.frame import operation
from ubertruck_ops.operations.physical_backup import six_hourly_physical
from ubertruck_ops.operations.rds import rds_six_hourly
from ubertruck_ops.operations.tiers import read_tier


class PhysicalBackupRefused(RuntimeError):
    """No six-hourly tier applies to the server; the message says why and what to do."""


@flow(name="incremental-backup", description="Six-hourly backup in the server's tier: PostgreSQL 17+ incrementals, "
                                             "base + WAL recovery points (13-16), or RDS snapshots.")
def incremental_backup(environment: str = "production", force_full: bool = False, max_chain_age_days: int = 7,
                       keep_wal_days: int = 3, max_wal_since_base_gib: float = 64,
                       archive_wait_seconds: int = 300) -> dict:
    """Take `environment`'s six-hourly backup; return its tier, what it did and why.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        force_full: Start a new chain with a base backup even when the current one could continue.
        max_chain_age_days: A chain whose base is older than this starts anew.
        keep_wal_days: Archived WAL is kept this long (longer where a kept backup needs it).
        max_wal_since_base_gib: Base and WAL tier: a new base once this much WAL was written since the last one.
        archive_wait_seconds: Base and WAL tier: how long a closed WAL segment may take to reach the repository.
    """
    with operation("incremental backup", environment, ping=True) as op, BackupAttempt(op) as backup:
        with backup.locked():
            op.step("choose the tier")
            tier, facts = read_tier(op.env)
            op.log.info("six-hourly tier: %s - %s", tier.name, tier.why)
            reason = refusal(tier)
            if reason:
                raise PhysicalBackupRefused(f"{op.env.database.describe()}: {reason}")
            if tier.name == RDS_SNAPSHOTS:
                return {"tier": tier.name, "tier_why": tier.why, **rds_six_hourly(op)}
            result = six_hourly_physical(backup, facts, tier, force_full=force_full,
                                         max_chain_age_days=max_chain_age_days, keep_wal_days=keep_wal_days,
                                         max_wal_since_base_gib=max_wal_since_base_gib,
                                         archive_wait_seconds=archive_wait_seconds)
        backup.report_unreadable()
        _publish(op, tier, result, backup)
        return {"tier": tier.name, "tier_why": tier.why, **result}


def _publish(op, tier, result: dict, backup: BackupAttempt) -> None:
    kind, point = result["kind"], result["recovery_point"]
    title, markdown = six_hourly_report(tier.name, tier.why, result)
    warnings = backup.warnings()
    if backup.final is not None:
        notice = notices.backup_succeeded(op.environment, backup.final, result["duration_seconds"],
                                          what=f"{kind} backup", warnings=warnings)
    else:
        notice = notices.recovery_point_recorded(op.environment, point, result["duration_seconds"], warnings)
    op.publish("incremental-backup-summary", title, markdown, notice)
