"""The RDS tier (no physical access), as flows call it: the six-hourly snapshot with its DR copy,
expiry and PITR-window checks; the restore drill into a scratch instance; a restore into a named
new instance. The source instance is never restored over, modified or deleted.

A drill's scratch instance is deleted in `finally`, so also when the run is cancelled: Prefect
cancels a run served by `serve` or a worker by SIGTERM, which its engine raises in the flow as
TerminationSignal (a BaseException), and the finally runs before the process ends. A process killed
outright (SIGKILL, a lost host) runs nothing: the next drill deletes scratch instances that carry
our tag and name prefix and are older than the block's leftover_hours.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.rds import RdsInstance
from ubertruck_ops.core import checks, notices, rds, reports
from ubertruck_ops.core.clock import ClockReading, disagreement
from ubertruck_ops.core.maintenance import DrillReport
from ubertruck_ops.core.manifest import QUOTED, utc_now
from ubertruck_ops.core.text import one_line
from ubertruck_ops.operations.frame import Operation
from ubertruck_ops.tasks import catalog, postgres
from ubertruck_ops.tasks import rds as aws


class RdsCheckFailed(RuntimeError):
    """The six-hourly RDS run kept its snapshot, then a check was critical or a later step failed."""


class RdsDrillFailed(RuntimeError):
    """The RDS restore drill did not restore what the latest nightly manifest promises."""


def rds_block(op: Operation) -> RdsInstance:
    """Return the environment's RDS block. Raise ValueError saying how to create it."""
    if op.env.rds is None:
        raise ValueError(f"environment {op.environment} has no RDS block ({op.environment}-rds): set RDS_INSTANCE_ID "
                         f"and run `ubertruck-ops blocks init --name {op.environment}`")
    return op.env.rds


def rds_six_hourly(op: Operation, schedule: str = "six-hourly") -> dict:
    """Take a tagged manual snapshot of the environment's RDS instance and wait for it; copy it to
    the DR region with its KMS key; expire our snapshots older than the retention (never the newest)
    in both regions; check the automated backups' retention and RPO. Return what was done and the
    verdicts. Raise RdsCheckFailed, naming the kept snapshot, when a check is critical or could not
    measure or a later step failed (the frame's failure notice reports it); warnings are posted as a
    notice of their own and do not fail the run."""
    block, step = rds_block(op), op.step
    step("take an RDS snapshot")
    before = utc_now()
    snapshot_id = rds.snapshot_name(block.instance_id, datetime.now(UTC))
    tags = rds.snapshot_tags(op.environment, schedule, block.instance_id)
    aws.create_snapshot(block, snapshot_id, tags)
    snapshot = aws.wait_snapshot(block, snapshot_id)
    # RDS dates the snapshot by its own clock: expiry by age only while this host's agrees (core/clock.py).
    clock = disagreement([ClockReading("Amazon RDS", before, utc_now(), snapshot.created)]) \
        if snapshot.created else "RDS did not say when the new snapshot was created, so this host's clock is unchecked"

    errors: list[str] = []
    copied = None
    if block.dr_region:
        step(f"copy the snapshot to {block.dr_region}")
        try:
            aws.copy_snapshot(block, snapshot, tags)
            aws.wait_snapshot(block, snapshot_id, block.dr_region)
            copied = f"{block.dr_region}/{snapshot_id}"
        except Exception as exc:  # noqa: BLE001 - the snapshot is kept; reported and raised below
            errors.append(f"copy to {block.dr_region}: {one_line(exc)}")

    step("expire old RDS snapshots")
    expired: dict[str, list[str]] = {}
    regions = [block.region] + ([block.dr_region] if block.dr_region else [])
    if clock:
        errors.append(f"expiry held: {clock}: no snapshot was deleted; fix the time (timedatectl; check NTP)")
        regions = []
    for region in regions:
        try:
            doomed = rds.snapshots_to_expire(aws.list_snapshots(block, region), block.instance_id, utc_now(),
                                             block.snapshot_retention_days)
            for old in doomed:
                aws.delete_snapshot(block, old, region)
            expired[region] = doomed
        except Exception as exc:  # noqa: BLE001 - expiry failing never touches the new snapshot
            errors.append(f"expiry in {region}: {one_line(exc)}")

    step("check the PITR window")
    try:
        described = aws.describe_instance(block)
        results = rds.pitr_checks(described["backup_retention_days"], described["latest_restorable_time"], utc_now(),
                                  block.min_backup_retention_days, block.rpo_warn_minutes, block.rpo_critical_minutes)
    except Exception as exc:  # noqa: BLE001 - could not measure: an error verdict, never ok
        results = [checks.error("rds point-in-time window", one_line(exc))]
    status = checks.worst(results)
    for result in results:
        (op.log.info if result.status == checks.OK else op.log.warning)("%s: %s (%s)", result.name, result.status,
                                                                         result.detail)

    step("report")
    all_expired = [f"{region}/{s}" for region, ids in expired.items() for s in ids]
    failed = status in (checks.CRITICAL, checks.ERROR) or bool(errors)
    # A failure is posted once, by the frame, with RdsCheckFailed's message; warnings are posted here.
    notice = (rds.six_hourly_notice(op.environment, snapshot_id, copied, all_expired, results, errors)
              if status == checks.WARN and not failed else None)
    op.publish("rds-six-hourly-summary", f"RDS snapshot {snapshot_id}",
               reports.rds_snapshot_report(block.instance_id, snapshot_id, copied, block.dr_region,
                                           block.snapshot_retention_days, all_expired, results, errors), notice)
    result = {"snapshot_id": snapshot_id, "instance_id": block.instance_id, "copied_to": copied,
              "expired": expired, "status": status, "checks": [r.to_row() for r in checks.ordered(results)],
              "errors": errors}
    if failed:
        bad = [f"{r.name}: {r.detail}" for r in results if r.status in (checks.CRITICAL, checks.ERROR)] + errors
        raise RdsCheckFailed(f"RDS snapshot {snapshot_id} is complete and kept; " + "; ".join(bad))
    return result


def restored_database(database: PostgresDatabase, address: str, port: int) -> PostgresDatabase:
    """The environment's database block pointed at a restored instance's endpoint (same login,
    sslmode and parameters): blocks/database.py's with_endpoint."""
    return database.with_endpoint(address, port)


def _count_rows(database: PostgresDatabase, keys: str = QUOTED) -> dict[str, int]:
    with postgres.connect(database) as conn:
        conn.read_only = True
        return postgres.row_counts(conn, keys)


def delete_leftovers(op: Operation, block: RdsInstance) -> list[str]:
    """Delete the drill scratch instances a killed run left behind; return their ids. A failure is
    logged, never raised (it must not stop today's drill)."""
    try:
        leftovers = rds.leftover_scratch(aws.list_instances(block), block.instance_id, utc_now(), block.leftover_hours)
        for instance_id in leftovers:
            op.log.warning("deleting scratch instance %s left behind by an earlier drill", instance_id)
            aws.delete_instance(block, instance_id)
        return leftovers
    except Exception as exc:  # noqa: BLE001 - reported; today's drill goes on
        op.log.warning("could not clean up leftover scratch instances: %s", one_line(exc))
        return []


def rds_drill(op: Operation, snapshot_id: str | None = None, target_time: datetime | None = None) -> DrillReport:
    """Restore the newest of our snapshots (or `snapshot_id`; or the instance as of `target_time`)
    into a scratch instance, connect to it, check that every table of the latest nightly manifest is
    there with at least its row count, record RTO (restore requested to verified) and RPO (the
    snapshot's age, or the target time's), and delete the scratch instance whatever happened.
    Report (artifact and notice), then return the report, or raise RdsDrillFailed."""
    block, step = rds_block(op), op.step
    source = op.env.database
    backup, counts, problems, error, scratch, cleanup = "(none found)", {}, [], None, None, []
    rto, rpo, left = 0.0, 0.0, []
    try:
        step("delete leftover scratch instances")
        left = delete_leftovers(op, block)
        step("find the latest nightly manifest")
        manifest = catalog.find_backup(op.repo, None)
        step("find the RDS snapshot")
        described = aws.describe_instance(block)
        if target_time is not None:
            backup, restored_at = f"{block.instance_id}@{target_time.isoformat()}", target_time
        else:
            snapshot = _snapshot(block, snapshot_id)
            backup, restored_at = snapshot.snapshot_id, snapshot.created
        rpo = max(0.0, (utc_now() - restored_at).total_seconds()) if restored_at else 0.0
        scratch = rds.scratch_name(block.instance_id, datetime.now(UTC))
        tags = rds.scratch_tags(op.environment, block.instance_id, backup[:250])
        step(f"restore into scratch instance {scratch}")
        started = time.monotonic()
        try:
            if target_time is not None:
                aws.restore_point_in_time(block, scratch, target_time, described, tags, block.scratch_instance_class)
            else:
                aws.restore_snapshot(block, backup, scratch, described, tags, block.scratch_instance_class)
            address, port = aws.wait_instance(block, scratch)
            step(f"verify the scratch instance against {manifest.backup_id}")
            counts = _count_rows(restored_database(source, address, port), manifest.row_count_keys)
            problems = rds.restored_shortfalls(manifest.row_counts, counts)
            rto = time.monotonic() - started
        finally:
            cleanup = _delete_scratch(op, block, scratch)
    except Exception as exc:  # noqa: BLE001 - reported below, then raised as the drill's failure
        error = exc
    passed = error is None and not problems and not cleanup
    findings = problems + cleanup + ([f"step '{step.current}': {type(error).__name__}: {one_line(error)}"] if error else [])
    op.publish("restore-drill-rds-report", f"RDS restore drill of {backup}",
               reports.rds_drill_report(passed, backup, scratch, bool(cleanup), left, counts, rto, rpo, findings),
        notices.drill_report(op.environment + " rds", backup, passed, rto, rpo, findings))
    if not passed:
        raise RdsDrillFailed(f"RDS restore drill of {backup} failed: " + "; ".join(findings)) from error
    return DrillReport("rds", backup, True, round(rto, 2), round(rpo, 1), tables=len(counts),
                       rows=sum(counts.values()), chain=[backup])


def _snapshot(block: RdsInstance, snapshot_id: str | None) -> rds.SnapshotInfo:
    snapshots = aws.list_snapshots(block)
    if snapshot_id:
        found = [s for s in snapshots if s.snapshot_id == snapshot_id.lower() and s.status == "available"]
        if not found:
            raise LookupError(f"no available manual snapshot {snapshot_id} of {block.instance_id}")
        return found[0]
    newest = rds.newest_snapshot(snapshots, block.instance_id)
    if newest is None:
        raise LookupError(f"no available snapshot of ours of {block.instance_id}: the six-hourly run takes them")
    return newest


def _delete_scratch(op: Operation, block: RdsInstance, scratch: str | None) -> list[str]:
    """Delete the scratch instance (without Prefect's task machinery: the run may be being
    cancelled); return a finding when that failed, for the report."""
    if scratch is None:
        return []
    try:
        aws.delete_instance_now(block, scratch)
        return []
    except Exception as exc:  # noqa: BLE001 - a scratch instance left running costs money: the drill fails
        if "DBInstanceNotFound" in str(exc):
            return []     # the restore was never accepted
        op.log.error("could not delete scratch instance %s: %s; delete it by hand (it is tagged %s=%s)", scratch,
                     one_line(exc), rds.PROJECT_TAG, rds.SCRATCH_KIND)
        return [f"scratch instance {scratch} could not be deleted: {one_line(exc)}"]


def rds_restore(op: Operation, target_id: str, snapshot_id: str | None = None,
                target_time: datetime | None = None) -> dict:
    """Restore the newest of our snapshots (or `snapshot_id`; or the instance as of `target_time`)
    into the new instance `target_id`, wait for it and count its rows; the instance is kept. Raise
    RestoreOverSource (before anything) when `target_id` is the source; RDS itself refuses an id
    that exists."""
    block, step = rds_block(op), op.step
    step("validate parameters")
    rds.refuse_restore_over_source(target_id, block.instance_id)
    described = aws.describe_instance(block)
    tags = {rds.PROJECT_TAG: "restore", "environment": op.environment, "source": block.instance_id}
    if target_time is not None:
        step(f"restore {block.instance_id} as of {target_time.isoformat()} into {target_id}")
        restored = f"{block.instance_id}@{target_time.isoformat()}"
        aws.restore_point_in_time(block, target_id, target_time, described, tags)
    else:
        step("find the RDS snapshot")
        restored = _snapshot(block, snapshot_id).snapshot_id
        step(f"restore {restored} into {target_id}")
        aws.restore_snapshot(block, restored, target_id, described, {**tags, "restored-from": restored})
    with op.failure_says(f"new instance `{target_id}` was requested and is left as it is: delete it when not needed"):
        step(f"wait for {target_id}")
        address, port = aws.wait_instance(block, target_id)
        step("count the restored rows")
        counts = _count_rows(restored_database(op.env.database, address, port))
    return {"restored": restored, "instance_id": target_id, "endpoint": f"{address}:{port}", "row_counts": counts,
            "duration_seconds": round(op.elapsed, 2)}
