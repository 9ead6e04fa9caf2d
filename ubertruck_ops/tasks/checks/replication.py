"""Checks on what our WAL archiving costs and delivers: the replication slot on the primary
(retained WAL, consumer, max_slot_wal_keep_size) and how far the archive is behind the server.
The verdicts are core/wal_safety.py's; this module reads the server and the repository."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.physical import ServerFacts
from ubertruck_ops.core.text import one_line
from ubertruck_ops.core.tiers import six_hourly_tier
from ubertruck_ops.core.wal_safety import WAL_SLOT, SlotFacts, keep_size_verdict, newest_archived, slot_verdict
from ubertruck_ops.core.wal_safety import archive_lag as lag_verdict
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import physical
from ubertruck_ops.tasks.postgres import connect
from ubertruck_ops.tasks.repository import Repository
from ubertruck_ops.tasks.wal import archived_files

_SLOT = ("SELECT active, active_pid, wal_status, restart_lsn::text, (pg_current_wal_lsn() - restart_lsn)::bigint, "
         "safe_wal_size FROM pg_replication_slots WHERE slot_name = %s")
_SERVER = ("SELECT pg_walfile_name(pg_current_wal_lsn()), "
           "(SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size')")


def archives_wal(facts: ServerFacts) -> bool:
    """Whether this (non-RDS) server's six-hourly tier keeps a WAL archive (core/tiers.py decides)."""
    return six_hourly_tier(facts, None).physical


def read_slot(conn: psycopg.Connection, facts: ServerFacts, slot: str = WAL_SLOT) -> SlotFacts:
    """Return what the server says about `slot` and its WAL settings (PostgreSQL 13+)."""
    current, keep = conn.execute(_SERVER).fetchone()
    row = conn.execute(_SLOT, (slot,)).fetchone()
    common = {"slot": slot, "current_segment": current, "segment_size": facts.wal_segment_size,
              "keep_size_mib": int(keep)}
    if row is None:
        return SlotFacts(exists=False, **common)
    active, pid, status, restart, retained, safe = row
    return SlotFacts(exists=True, active=bool(active), active_pid=pid, wal_status=status, restart_lsn=restart,
                     retained_bytes=None if retained is None else int(retained),
                     safe_wal_size=None if safe is None else int(safe), **common)


def wal_slot(db: PostgresDatabase, limits: CheckThresholds, environment: str, repo: Repository | None = None,
             keep_size: bool = True, slot: str = WAL_SLOT) -> list[CheckResult]:
    """Our slot on the primary (core.wal_safety.slot_verdict) and, with `keep_size`, its
    max_slot_wal_keep_size. For a lost slot the archive in `repo` is listed to name the hole.
    Call it only without RDS (no slot there)."""
    with connect(db) as conn:
        facts = physical.server_facts(conn)
        if facts.version_num < 130000:
            return [checks.ok(f"wal slot {slot}", None, None, "PostgreSQL before 13: no WAL archive (tier none)")]
        archiving = archives_wal(facts)
        slot_facts = read_slot(conn, facts, slot)
    newest = None
    if slot_facts.wal_status == "lost" and repo is not None:
        try:
            found = newest_archived(archived_files(repo), slot_facts.current_segment, slot_facts.segment_size)
        except Exception as exc:  # noqa: BLE001 - the lost slot is critical whether or not the archive answers
            logger().warning("could not list the WAL archive to name the hole (%s)", one_line(exc))
            found = None
        newest = found[0] if found else None
    results = [slot_verdict(slot_facts, environment=environment, archives_wal=archiving,
                            warn_mib=limits.wal_slot_warn_mib, critical_mib=limits.wal_slot_critical_mib,
                            newest_archived=newest)]
    bounded = keep_size_verdict(slot_facts, archives_wal=archiving, critical_mib=limits.wal_slot_critical_mib)
    if keep_size and bounded is not None:
        results.append(bounded)
    return results


def current_segment(db: PostgresDatabase) -> tuple[str | None, int]:
    """Return the server's current WAL file name (None when its tier keeps no WAL archive) and its
    segment size."""
    with connect(db) as conn:
        facts = physical.server_facts(conn)
        if facts.version_num < 130000 or not archives_wal(facts):
            return None, facts.wal_segment_size
        return conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0], facts.wal_segment_size


def archive_lag(db: PostgresDatabase, repo: Repository, limits: CheckThresholds, environment: str) -> CheckResult:
    """How far the WAL archive is behind the server (core.wal_safety.archive_lag). The server's
    position is read before the archive is listed, so a segment archived meanwhile never counts
    as missing."""
    current, size = current_segment(db)
    if current is None:
        return checks.ok("wal archive lag", None, None, "this environment's tier keeps no WAL archive")
    return lag_verdict(current, archived_files(repo), datetime.now(UTC), size, environment=environment,
                       critical_seconds=limits.wal_lag_critical_seconds,
                       critical_segments=limits.wal_lag_critical_segments)
