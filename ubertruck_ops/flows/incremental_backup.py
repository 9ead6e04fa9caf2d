"""incremental-backup: the six-hourly physical backup, as a chain of PostgreSQL 17+ incrementals.

The story: take the backup lock; refuse clearly when the server cannot do it; decide
between a new base backup and an incremental on top of the last one; stream
pg_basebackup through zstd and gpg into the repository; write the manifest (parent,
WAL range, system identifier, timeline) last - from then on the backup is final, whatever
fails after it; apply chain-aware retention to backups and to the WAL archive (backup
retention after a failed backup too, so a full repository frees itself); report.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow

from ubertruck_ops.core import notices
from ubertruck_ops.core.backups import base_instead
from ubertruck_ops.core.manifest import Manifest, iso, utc_now
from ubertruck_ops.core.physical import ServerFacts, find_wal_gaps, plan_backup, refusal, segment_of
from ubertruck_ops.core.text import human_bytes, human_seconds
from ubertruck_ops.log import logger
from ubertruck_ops.operations.backup import BackupAttempt
from ubertruck_ops.operations.frame import operation
from ubertruck_ops.tasks import catalog, load, physical, postgres, wal
from ubertruck_ops.tasks.crypto import DecryptionKeyError, gpg_session, zstd_version
from ubertruck_ops.tasks.execute import CommandFailed
from ubertruck_ops.tasks.repository import Repository


def _wal_retention(repo: Repository, facts: ServerFacts, keep_wal_days: int) -> int:
    """Delete archived WAL no kept backup needs; return how many files went. Skipped (0, warned) while
    a physical backup's manifest is unreadable: the WAL it needs is unknown, so none may go."""
    found = catalog.scan(repo)
    unknown = [i for i, kind in found.unreadable_ids().items() if kind != "logical"]
    if unknown:
        logger().warning("WAL retention skipped: the manifest of %s is unreadable, so the WAL it needs is unknown",
                         ", ".join(unknown))
        return 0
    protected = [(segment_of(m.physical["start_lsn"], facts.wal_segment_size),
                  segment_of(m.physical["end_lsn"], facts.wal_segment_size)) for m in found.manifests if m.physical]
    return wal.apply_wal_retention(repo, protected, utc_now(), timedelta(days=keep_wal_days), facts.wal_segment_size)


class PhysicalBackupRefused(RuntimeError):
    """The server cannot take physical incremental backups; the message says what to do."""


@flow(name="incremental-backup", description="Physical backup chain: a base, then PostgreSQL 17+ incrementals.")
def incremental_backup(environment: str = "production", force_full: bool = False, max_chain_age_days: int = 7,
                       keep_wal_days: int = 3) -> dict:
    """Take the next backup of `environment`'s physical chain; return its id, kind and why.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        force_full: Start a new chain with a base backup even when the current one could continue.
        max_chain_age_days: A chain whose base is older than this starts anew.
        keep_wal_days: Archived WAL is kept this long (longer where a kept backup needs it).
    """
    with operation("incremental backup", environment) as op:
        env, repo, step, log = op.env, op.repo, op.step, op.log
        backup = BackupAttempt(op)
        with backup.locked():
            with backup.until_manifest():
                step("check the server")
                with postgres.connect(env.database) as conn:
                    facts = physical.server_facts(conn)
                reason = refusal(facts)
                if reason:
                    raise PhysicalBackupRefused(f"{env.database.describe()}: {reason}")

                op.restart_clock()
                started = utc_now()
                last, base = catalog.latest_physical(repo)
                kind, why = plan_backup(last, base, facts, started, timedelta(days=max_chain_age_days), force_full)
                log.info("%s backup: %s", kind, why)
                with gpg_session(env.encryption, for_restore=kind == "incremental") as gpg:
                    previous = None
                    if kind == "incremental":
                        step("read the previous backup's manifest")
                        previous = physical.recalled_manifest(environment, last.backup_id)
                        if previous is None:
                            try:
                                previous = load.read_object(repo, last, "backup_manifest", gpg)
                            except DecryptionKeyError:
                                (kind, why), last = base_instead(kind), None
                                log.warning("%s", why)
                    folder = backup.begin(kind, started)
                    step(f"stream the {kind} backup")
                    try:
                        objects, wal_range, backup_manifest = physical.take_basebackup(env.database, gpg, repo, folder,
                                                                                       previous)
                    except CommandFailed as exc:
                        fallback = base_instead(kind, str(exc))
                        if fallback is None:
                            raise
                        log.warning("incremental backup failed (%s); starting a new chain with a base backup", exc)
                        catalog.discard_backup(repo, backup.backup_id)
                        (kind, why), last = fallback, None
                        folder = backup.begin(kind, utc_now())
                        objects, wal_range, backup_manifest = physical.take_basebackup(env.database, gpg, repo, folder,
                                                                                       None)
                    tools = {"pg_basebackup": postgres.tool_version("pg_basebackup"), "gpg": gpg.version(),
                             "zstd": zstd_version()}

                step("write the manifest")
                manifest = Manifest(
                    backup_id=backup.backup_id, kind=kind, started_at=iso(started), finished_at=iso(utc_now()),
                    database={"name": env.database.database, "host": env.database.host, "port": env.database.port,
                              "server_version": str(facts.version_num)},
                    tools=tools, encryption={"mode": env.encryption.mode, "cipher": "AES256",
                                             "recipients": env.encryption.recipients},
                    objects=objects, parent=last.backup_id if kind == "incremental" else None,
                    physical={**wal_range, "system_identifier": facts.system_identifier,
                              "wal_segment_size": facts.wal_segment_size})
                backup.write_manifest(manifest)
            duration = op.elapsed
            physical.remember_manifest(environment, manifest.backup_id, backup_manifest)

            step("apply retention")
            backup.retention = retention = catalog.apply_retention(repo, env.repository, utc_now(), taken=manifest)
            step("apply WAL retention")
            retention["wal_deleted"] = _wal_retention(repo, facts, keep_wal_days)
            step("check the WAL archive for gaps")
            chain_base = base if kind == "incremental" else manifest
            gaps = find_wal_gaps(wal.archived_files(repo),
                                 segment_of(chain_base.physical["start_lsn"], facts.wal_segment_size),
                                 facts.timeline, facts.wal_segment_size)
            if gaps:
                log.warning("WAL archive gap: %d segment(s) missing, first %s: point-in-time restore cannot "
                            "cross it; is `ubertruck-ops wal-archive` running?", len(gaps), gaps[0])
                op.notify(notices.operation_failed(
                    "WAL archiving", environment, "gap check",
                    f"{len(gaps)} WAL segment(s) missing from the archive, first {gaps[0]}",
                    ["point-in-time restore cannot cross the gap; check `ubertruck-ops wal-archive`"]))
        backup.report_unreadable()
        sizes = ", ".join(f"{o.name} {human_bytes(o.size)}" for o in objects)
        op.publish("incremental-backup-summary", f"{kind} backup {manifest.backup_id}", (
            f"# {kind.title()} backup `{manifest.backup_id}`\n\n- why: {why}\n"
            f"- parent: {manifest.parent or 'none (new chain)'}\n"
            f"- WAL {wal_range['start_lsn']} to {wal_range['end_lsn']}, timeline {wal_range['timeline']}\n"
            f"- stored: {sizes}\n- duration: {human_seconds(duration)}\n"
            f"- WAL archive gaps since the chain's base: {', '.join(gaps[:5]) or 'none'}\n"),
            notices.backup_succeeded(environment, manifest, duration, what=f"{kind} backup",
                                     warnings=[w for w in [retention["clock_warning"]] if w]))
        return {"backup_id": manifest.backup_id, "kind": kind, "why": why, "parent": manifest.parent,
                "duration_seconds": round(duration, 2), "objects": {o.name: o.size for o in objects},
                "retention": retention, "wal_gaps": gaps}
