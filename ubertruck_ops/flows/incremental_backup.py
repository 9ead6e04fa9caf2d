"""incremental-backup: the six-hourly physical backup, as a chain of PostgreSQL 17+ incrementals.

The story: take the backup lock; refuse clearly when the server cannot do it; decide
between a new base backup and an incremental on top of the last one; stream
pg_basebackup through zstd and gpg into the repository; write the manifest (parent,
WAL range, system identifier, timeline) last - from then on the backup is final, whatever
fails after it; apply chain-aware retention to backups and to the WAL archive (backup
retention after a failed backup too, so a full repository frees itself); report.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.core import notices
from ubertruck_ops.core.manifest import Manifest, backup_folder, iso, new_backup_id, utc_now
from ubertruck_ops.core.physical import find_wal_gaps, plan_backup, refusal, segment_of
from ubertruck_ops.core.steps import Steps
from ubertruck_ops.core.text import human_bytes, human_seconds, one_line
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import catalog, load, physical, postgres, wal
from ubertruck_ops.tasks.crypto import DecryptionKeyError, gpg_session, zstd_version
from ubertruck_ops.tasks.execute import CommandFailed
from ubertruck_ops.tasks.locks import backup_lock
from ubertruck_ops.tasks.notify import notify
from ubertruck_ops.tasks.repository import open_repository


def _wal_retention(repo, facts, keep_wal_days: int) -> int:
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
    log = logger()
    step = Steps(log)
    env = load_environment(environment)
    repo = open_repository(env.repository)
    backup_id = final = None
    retention: dict = {}
    try:
        step("wait for the backup lock")
        with backup_lock(environment, holder=f"incremental backup of {environment}"):
            try:
                step("check the server")
                with postgres.connect(env.database) as conn:
                    facts = physical.server_facts(conn)
                reason = refusal(facts)
                if reason:
                    raise PhysicalBackupRefused(f"{env.database.describe()}: {reason}")

                clock, started = time.monotonic(), utc_now()
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
                                kind, last = "base", None
                                why = ("this host holds only public keys and no local copy of the previous backup's "
                                       "manifest, so a new chain starts")
                                log.warning("%s", why)
                    backup_id = new_backup_id(started, kind, secrets.token_hex(3))
                    folder = backup_folder(backup_id)
                    step(f"stream the {kind} backup")
                    try:
                        objects, wal_range, backup_manifest = physical.take_basebackup(env.database, gpg, repo, folder,
                                                                                       previous)
                    except CommandFailed as exc:
                        if kind != "incremental":
                            raise
                        # e.g. WAL summaries gone after a crash: a fresh chain is the safe answer.
                        log.warning("incremental backup failed (%s); starting a new chain with a base backup", exc)
                        catalog.discard_backup(repo, backup_id)
                        kind, last = "base", None
                        why = f"the incremental failed ({str(exc)[:200]}), so a new chain starts"
                        backup_id = new_backup_id(utc_now(), kind, secrets.token_hex(3))
                        folder = backup_folder(backup_id)
                        objects, wal_range, backup_manifest = physical.take_basebackup(env.database, gpg, repo, folder,
                                                                                       None)
                    tools = {"pg_basebackup": postgres.tool_version("pg_basebackup"), "gpg": gpg.version(),
                             "zstd": zstd_version()}

                step("write the manifest")
                manifest = Manifest(
                    backup_id=backup_id, kind=kind, started_at=iso(started), finished_at=iso(utc_now()),
                    database={"name": env.database.database, "host": env.database.host, "port": env.database.port,
                              "server_version": str(facts.version_num)},
                    tools=tools, encryption={"mode": env.encryption.mode, "cipher": "AES256",
                                             "recipients": env.encryption.recipients},
                    objects=objects, parent=last.backup_id if kind == "incremental" else None,
                    physical={**wal_range, "system_identifier": facts.system_identifier,
                              "wal_segment_size": facts.wal_segment_size})
                catalog.write_manifest(repo, manifest)
            except Exception as exc:
                # Not a backup: remove what it wrote, then apply retention anyway - on a full
                # repository nothing else would ever free space for the next run.
                retention = catalog.clean_up_failed_backup(repo, env.repository, backup_id, utc_now())
                if catalog.out_of_space(exc):
                    raise catalog.repository_full(repo.description, exc, retention) from exc
                raise
            # From here on the backup is final: a failure below fails the run, never discards it.
            final = manifest
            duration = time.monotonic() - clock
            physical.remember_manifest(environment, backup_id, backup_manifest)

            step("apply retention")
            retention = catalog.apply_retention(repo, env.repository, utc_now(), taken=manifest)
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
                notify(env.slack, notices.operation_failed(
                    "WAL archiving", environment, "gap check",
                    f"{len(gaps)} WAL segment(s) missing from the archive, first {gaps[0]}",
                    ["point-in-time restore cannot cross the gap; check `ubertruck-ops wal-archive`"]))
    except Exception as exc:
        if retention.get("unreadable"):
            notify(env.slack, notices.unreadable_manifests(environment, retention["unreadable"]))
        if final is None:
            notify(env.slack, notices.operation_failed("incremental backup", environment, step.current, one_line(exc),
                                                       notices.after_failed_backup(retention) if backup_id else []))
            raise
        notify(env.slack, notices.backup_kept_after_failure("incremental backup", environment, final.backup_id,
                                                            step.current, one_line(exc)))
        raise catalog.FailedAfterBackup(final.backup_id, step.current, exc) from exc

    if retention.get("unreadable"):
        notify(env.slack, notices.unreadable_manifests(environment, retention["unreadable"]))
    sizes = ", ".join(f"{o.name} {human_bytes(o.size)}" for o in objects)
    create_markdown_artifact(key="incremental-backup-summary", description=f"{kind} backup {backup_id}", markdown=(
        f"# {kind.title()} backup `{backup_id}`\n\n- why: {why}\n- parent: {manifest.parent or 'none (new chain)'}\n"
        f"- WAL {wal_range['start_lsn']} to {wal_range['end_lsn']}, timeline {wal_range['timeline']}\n"
        f"- stored: {sizes}\n- duration: {human_seconds(duration)}\n"
        f"- WAL archive gaps since the chain's base: {', '.join(gaps[:5]) or 'none'}\n"))
    notify(env.slack, notices.backup_succeeded(environment, manifest, duration, what=f"{kind} backup",
                                               warnings=[w for w in [retention["clock_warning"]] if w]))
    return {"backup_id": backup_id, "kind": kind, "why": why, "parent": manifest.parent,
            "duration_seconds": round(duration, 2), "objects": {o.name: o.size for o in objects},
            "retention": retention, "wal_gaps": gaps}
