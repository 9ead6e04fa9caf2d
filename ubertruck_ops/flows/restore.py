"""restore: put a backup back into a database, never half-way.

The story: find the backup; refuse unless an existing target is named in `confirm`;
verify every object's checksum and that the key decrypts (nothing written yet);
recreate the roles it needs; restore into a fresh staging database; compare every
table's row count with the manifest; only then swap it in under the target's name,
keeping the previous database renamed beside it. The guide's `pg_restore --clean`
straight into production could fail halfway and leave neither old nor new data.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from prefect import flow

from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.core import names, notices, rds
from ubertruck_ops.core.clock import parse_target_time
from ubertruck_ops.core.reports import physical_restore_report, rds_restore_report
from ubertruck_ops.core.restore_rules import RestoreRefused, files_to_folder
from ubertruck_ops.core.restore_rules import check_files_to as check_rules
from ubertruck_ops.operations.frame import operation
from ubertruck_ops.operations.logical_restore import restore_logical
from ubertruck_ops.operations.physical_restore import restore_physical
from ubertruck_ops.operations.rds import rds_restore
from ubertruck_ops.tasks import load
from ubertruck_ops.tasks.crypto import gpg_session

__all__ = ["RestoreRefused", "check_files_to", "restore"]   # RestoreRefused: where callers have always found it


@flow(name="restore", description="Restore a backup (default: the latest complete) into a target environment's database.")
def restore(environment: str = "production", backup_id: str | None = None, target_environment: str | None = None,
            confirm: str | None = None, target_time: str | None = None, files_to: str | None = None,
            method: Literal["logical", "physical"] = "logical", restore_folder: str | None = None,
            keep_running: bool = False, rds_instance: str | None = None) -> dict:
    """Restore a backup of `environment`.

    logical (default): into `target_environment`'s database (default: the same); overwriting an
    existing database requires `confirm` equal to its name; `target_time` (ISO 8601) picks the
    newest backup finished at or before it; `files_to` extracts the app and config archives into
    that folder (never /).
    physical: rebuild a new cluster in `restore_folder` (default: a new temporary folder; the data
    directory is its `data` folder, beside the WAL it replays) from the incremental chain and
    archived WAL, replayed up to `target_time` (default: all archived WAL), start it on a port of
    its own and verify it; it keeps running when `keep_running`. Parameters of the other method
    are refused.
    rds_instance (an RDS environment): restore the newest of our RDS snapshots (or the snapshot
    `backup_id`; or the instance as of `target_time` from its automated backups) into the new RDS
    instance of that name, wait for it and count its rows. Never the source's own id; an existing
    instance is never touched (RDS refuses the name).

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        backup_id: The backup to restore; empty: the latest complete one (or the newest before target_time).
        target_environment: Whose database receives the restore; empty: environment's own.
        confirm: Required to overwrite an existing database: its exact name.
        target_time: ISO 8601 moment to restore to, with its offset, e.g. 2026-11-24T17:00:00+05:30 (India time);
            one without an offset is refused (India time or UTC? 5.5 hours apart).
        files_to: Folder to extract the app and config archives into (never /); empty: not extracted.
        method: logical (nightly dump) or physical (incremental chain + WAL, point in time).
        restore_folder: Physical only: an empty or new folder to build the restored cluster in (its data
            directory is restore_folder/data); empty: a new temporary folder.
        keep_running: Physical only: leave the restored server running after verifying it.
        rds_instance: RDS only: the new instance to restore into (a valid RDS identifier, not the source's).
    """
    if rds_instance:
        others = [name for name, value in (("target_environment", target_environment), ("confirm", confirm),
                                           ("files_to", files_to), ("restore_folder", restore_folder),
                                           ("keep_running", keep_running), ("method=physical", method == "physical"))
                  if value]
        return _restore_rds(environment, rds_instance, backup_id, target_time, others)
    if method == "physical":
        logical_only = [name for name, value in (("backup_id", backup_id), ("target_environment", target_environment),
                                                 ("confirm", confirm), ("files_to", files_to)) if value]
        return _restore_physical(environment, target_time, restore_folder, keep_running, logical_only)
    target_name = target_environment or environment
    with operation("restore", environment) as op:
        target = op.env if target_name == environment else load_environment(target_name)
        op.report_as(target_name, target.slack)
        with op.failure_says():
            op.restart_clock()
            op.step("validate parameters")
            before = _parse_time(target_time)
            if restore_folder is not None or keep_running:
                raise ValueError("restore_folder and keep_running apply to method=physical only")
            files_folder = check_files_to(files_to)
            return restore_logical(op, target_name, target, backup_id, before, confirm, files_folder)


def check_files_to(files_to: str | None) -> str | None:
    """Given the files_to parameter, return the folder to extract into (absolute), or None.

    Raise RestoreRefused for / and ValueError when it is relative, or is, or lies under, something
    that is not a writable folder: checked before anything is restored or swapped
    (core/restore_rules decides on what tasks/load.folder_facts finds).
    """
    asked = files_to_folder(files_to)
    if asked is None:
        return None
    folder = str(Path(asked))
    check_rules(files_to, folder, load.folder_facts(folder))
    return folder


def _parse_time(text: str | None) -> datetime | None:
    """target_time as an aware datetime; refused without an offset (core.clock.parse_target_time)."""
    return parse_target_time(text)


def _restore_physical(environment: str, target_time: str | None, restore_folder: str | None, keep_running: bool,
                      logical_only: list[str]) -> dict:
    with operation("point-in-time restore", environment, notify_failures=True) as op:
        op.step("validate parameters")
        if logical_only:
            raise ValueError(f"{', '.join(logical_only)}: logical restores only (method=physical builds a new cluster)")
        before = _parse_time(target_time)
        # pg_ctl runs -D/-l/-o through sh, and restore_command runs through sh too: refuse here,
        # before a folder is created or anything is fetched.
        folder = Path(names.shell_safe_path(restore_folder, "restore_folder")) if restore_folder else None
        op.step("restore the physical chain")
        with gpg_session(op.env.encryption, for_restore=True) as gpg:
            result = restore_physical(op.repo, gpg, before, folder, keep_running, known_roles=(op.env.database.user,))
        result.pop("server")
        duration = op.elapsed
        op.publish("restore-report", "physical restore", physical_restore_report(result, target_time, keep_running,
                                                                                  duration),
            notices.restore_succeeded(environment, result["data_directory"], result["chain"][-1], duration, None))
        return {**result, "duration_seconds": round(duration, 2)}


def _restore_rds(environment: str, rds_instance: str, snapshot_id: str | None, target_time: str | None,
                 others: list[str]) -> dict:
    with operation(f"RDS restore into {rds_instance}", environment, notify_failures=True) as op:
        op.step("validate parameters")
        if others:
            raise ValueError(f"{', '.join(others)}: not with rds_instance (an RDS restore creates a new instance)")
        if snapshot_id and target_time:
            raise ValueError("give backup_id (a snapshot) or target_time (point in time), not both")
        if snapshot_id:
            rds.validate_identifier(snapshot_id, "backup_id (an RDS snapshot id)")
        result = rds_restore(op, rds_instance, snapshot_id, _parse_time(target_time))
        op.step("report")
        op.publish("restore-report", f"RDS restore into {rds_instance}", rds_restore_report(rds_instance, result),
            notices.restore_succeeded(environment, f"RDS instance {rds_instance} ({result['endpoint']})",
                                      result["restored"], result["duration_seconds"], None))
        return result
