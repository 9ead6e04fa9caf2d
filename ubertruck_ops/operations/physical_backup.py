"""The six-hourly run on a server with physical access: the next link of the chain.

Native incremental tier (PostgreSQL 17+): a base backup, then incrementals on top of it. Base and
WAL tier (13-16, or summarize_wal off): a base backup now and then, and in between a recovery
point: close the current WAL segment, wait until it is archived, check every segment since the
base is in the repository intact, record the point (time, LSN). Either way the WAL archive's
retention and gap check follow.
"""

from __future__ import annotations

from datetime import timedelta

from ubertruck_ops.core import checks, notices
from ubertruck_ops.core.backups import base_instead
from ubertruck_ops.core.checks import OK
from ubertruck_ops.core.manifest import Manifest, iso, utc_now
from ubertruck_ops.core.physical import (
    ServerFacts,
    find_wal_gaps,
    parse_lsn,
    parse_segment,
    plan_backup,
    replay_from,
    segment_of,
)
from ubertruck_ops.core.text import human_bytes, human_seconds, one_line
from ubertruck_ops.core.tiers import NATIVE_INCREMENTAL, Tier
from ubertruck_ops.log import logger
from ubertruck_ops.operations.backup import BackupAttempt
from ubertruck_ops.tasks import catalog, load, physical, postgres, recovery, wal
from ubertruck_ops.tasks.checks import replication
from ubertruck_ops.tasks.crypto import DecryptionKeyError, gpg_session, zstd_version
from ubertruck_ops.tasks.execute import CommandFailed
from ubertruck_ops.tasks.repository import Repository

EVERY_LATER_SEGMENT = 1 << 62


def wal_retention(repo: Repository, facts: ServerFacts, keep_wal_days: int, now=None, held: str | None = None) -> int:
    """Delete archived WAL no kept backup needs; return how many files went. Skipped (0, warned) while
    a physical backup's manifest is unreadable: the WAL it needs is unknown, so none may go; and while
    backup retention is `held` for the clock (core/clock.py): WAL ages are read off the same clock."""
    if held:
        logger().warning("WAL retention skipped: %s", held)
        return 0
    found = catalog.scan(repo)
    unknown = [i for i, kind in found.unreadable_ids().items() if kind != "logical"]
    if unknown:
        logger().warning("WAL retention skipped: the manifest of %s is unreadable, so the WAL it needs is unknown",
                         ", ".join(unknown))
        return 0
    size, now, keep = facts.wal_segment_size, now or utc_now(), timedelta(days=keep_wal_days)
    physical_backups = [m for m in found.manifests if m.physical]
    protected = [(segment_of(m.physical["start_lsn"], size), segment_of(m.physical["end_lsn"], size))
                 for m in physical_backups]
    start = replay_from([(m.finished, segment_of(m.physical["start_lsn"], size)) for m in physical_backups], now, keep)
    if start is not None:
        protected.append((start, EVERY_LATER_SEGMENT))   # a restore into the window replays all of it
    return wal.apply_wal_retention(repo, protected, now, keep, size)


def six_hourly_physical(backup: BackupAttempt, facts: ServerFacts, tier: Tier, *, force_full: bool,
                        max_chain_age_days: int, keep_wal_days: int, max_wal_since_base_gib: float,
                        archive_wait_seconds: float) -> dict:
    """Take the chain's next step on `backup`'s operation (under its lock); return what was done."""
    op = backup.op
    env, repo, step, log = op.env, op.repo, op.step, op.log
    op.restart_clock()
    # Dated by the database server's clock; retention and WAL retention judge ages only while this host's agrees.
    backup.read_clock(postgres.read_server_clock(env.database))
    started = backup.now()
    last, base = catalog.latest_physical(repo)
    current_lsn = physical.current_wal_lsn(env.database)
    wal_since_base = parse_lsn(current_lsn) - parse_lsn(base.physical["start_lsn"]) if base else 0
    kind, why = plan_backup(last, base, facts, started, timedelta(days=max_chain_age_days), force_full,
                            incrementals=tier.name == NATIVE_INCREMENTAL, wal_since_base=wal_since_base,
                            max_wal_since_base=int(max_wal_since_base_gib * (1 << 30)))
    log.info("%s: %s", kind, why)
    if kind == "recovery-point":
        result, chain_base = _recovery_point(op, backup, last, base, facts, archive_wait_seconds), base
    else:
        with backup.until_manifest():
            result = _backup(op, backup, facts, kind, why, last, started)
        physical.remember_manifest(op.environment, result["backup_id"], result.pop("backup_manifest"))
        chain_base = base if result["kind"] == "incremental" else backup.final
    result.update(why=result["why"] or why, chain_base=chain_base.backup_id)

    step("apply retention")
    retention = backup.apply_retention()
    step("apply WAL retention")
    retention["wal_deleted"] = wal_retention(repo, facts, keep_wal_days, backup.now(), retention["held"])
    step("check the WAL archive for gaps")
    gaps = find_wal_gaps(wal.archived_files(repo), segment_of(chain_base.physical["start_lsn"], facts.wal_segment_size),
                         facts.timeline, facts.wal_segment_size)
    if gaps:
        log.warning("WAL archive gap: %d segment(s) missing, first %s: point-in-time restore cannot "
                    "cross it; is `ubertruck-ops wal-archive` running?", len(gaps), gaps[0])
        op.notify(notices.operation_failed(
            "WAL archiving", op.environment, "gap check",
            f"{len(gaps)} WAL segment(s) missing from the archive, first {gaps[0]}",
            ["point-in-time restore cannot cross the gap; check `ubertruck-ops wal-archive`"]))
    step("check the WAL archive keeps up with the server")
    result["wal_lag"] = _archive_lag(op)
    result.update(retention=retention, wal_gaps=gaps, duration_seconds=round(op.elapsed, 2))
    return result


def _archive_lag(op) -> dict:
    """The gap check sees only up to the newest archived segment: an archiver that stopped leaves
    no gap. Compare that segment with the server's current one; warn and notify when it is behind
    (core/wal_safety.py decides). Return the check's row."""
    limits = op.env.thresholds
    try:
        lag = replication.archive_lag(op.env.database, op.repo, limits, op.environment)
    except Exception as exc:  # noqa: BLE001 - the backup stands; the check says it could not measure
        lag = checks.error("wal archive lag", one_line(exc))
    if lag.status != OK:
        op.log.warning("WAL archive behind: %s", lag.detail)
        op.notify(notices.operation_failed("WAL archiving", op.environment, "archive lag check", lag.detail,
                                           ["point-in-time restore cannot reach past the newest archived segment"]))
    return lag.to_row()


def _backup(op, backup: BackupAttempt, facts: ServerFacts, kind: str, why: str, last: Manifest | None,
            started) -> dict:
    """Stream a base or incremental backup into the repository and write its manifest."""
    env, repo, step, log = op.env, op.repo, op.step, op.log
    # The pg_basebackup for this server's major and sslmode (TLS needs a client built with it).
    client = postgres.client_tools(facts.version_num // 10000, env.database.sslmode, needs=("pg_basebackup",))
    with gpg_session(env.encryption, for_restore=kind == "incremental") as gpg:
        previous = None
        if kind == "incremental":
            step("read the previous backup's manifest")
            previous = physical.recalled_manifest(op.environment, last.backup_id)
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
                                                                           previous, client)
        except CommandFailed as exc:
            fallback = base_instead(kind, str(exc))
            if fallback is None:
                raise
            log.warning("incremental backup failed (%s); starting a new chain with a base backup", exc)
            catalog.discard_backup(repo, backup.backup_id)
            (kind, why), last = fallback, None
            folder = backup.begin(kind, backup.now())
            objects, wal_range, backup_manifest = physical.take_basebackup(env.database, gpg, repo, folder, None, client)
        tools = {"pg_basebackup": postgres.tool_version("pg_basebackup", client), "gpg": gpg.version(),
                 "zstd": zstd_version()}

    step("write the manifest")
    manifest = Manifest(
        backup_id=backup.backup_id, kind=kind, started_at=iso(started), finished_at=iso(backup.now()),
        database={"name": env.database.database, "host": env.database.host, "port": env.database.port,
                  "server_version": str(facts.version_num)},
        tools=tools, encryption={"mode": env.encryption.mode, "cipher": "AES256",
                                 "recipients": env.encryption.recipients},
        objects=objects, parent=last.backup_id if kind == "incremental" else None,
        physical={**wal_range, "system_identifier": facts.system_identifier,
                  "wal_segment_size": facts.wal_segment_size})
    backup.write_manifest(manifest)
    sizes = ", ".join(f"{o.name} {human_bytes(o.size)}" for o in objects)
    return {"backup_id": manifest.backup_id, "kind": kind, "why": why, "parent": manifest.parent,
            "objects": {o.name: o.size for o in objects}, "stored": sizes, "backup_manifest": backup_manifest,
            "wal": wal_range, "recovery_point": None}


def _recovery_point(op, backup: BackupAttempt, last: Manifest, base: Manifest, facts: ServerFacts,
                    archive_wait_seconds: float) -> dict:
    """Make the last hours restorable and prove it: close the segment, wait for it, check the WAL
    since the base (what the previous point checked is not read again), record the point."""
    repo, step, size = op.repo, op.step, facts.wal_segment_size
    step("close the current WAL segment")
    point = physical.close_wal_segment(op.env.database)
    step(f"wait for WAL segment {point['segment']} to be archived")
    waited = recovery.wait_until_archived(repo, point["segment"], archive_wait_seconds)
    step("check the WAL archive since the base")
    # Every segment since the base must be there; only those after the previous point are read again.
    first = verify_from = segment_of(base.physical["start_lsn"], size)
    previous = recovery.latest_point(repo, base.backup_id)
    if previous and previous.get("timeline") == point["timeline"]:
        verify_from = parse_segment(previous["checked_through"], size)[1] + 1
    last_segment = parse_segment(point["segment"], size)[1]
    checked = recovery.check_segments(repo, point["timeline"], first, last_segment, size, verify_from)
    step("record the recovery point")
    record = recovery.record_point(repo, base.backup_id, last.backup_id, point, point["segment"], checked,
                                   backup.now())
    op.log.info("recovery point %s (LSN %s) proven: %d new WAL segment(s) checked (%s), archived %s after closing",
                record["time"], record["lsn"], checked["segments"], human_bytes(checked["bytes"]),
                human_seconds(waited))
    return {"backup_id": None, "kind": "recovery-point", "why": None, "parent": last.backup_id, "objects": {}, "stored": "nothing new (the WAL archive holds it)",
            "wal": {"start_lsn": base.physical["start_lsn"], "end_lsn": point["lsn"], "timeline": point["timeline"]},
            "recovery_point": record}
