"""Physical backups: when they can run, when a chain starts anew, WAL segment arithmetic.
Pure functions, unit-tested."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ubertruck_ops.core.manifest import Manifest
from ubertruck_ops.core.text import human_bytes

_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")


@dataclass(frozen=True)
class ServerFacts:
    version_num: int
    summarize_wal: bool
    wal_level: str
    can_replicate: bool
    managed_by: str | None        # "Amazon RDS", ... when the provider forbids physical access
    system_identifier: str
    timeline: int
    wal_segment_size: int
    can_switch_wal: bool = True   # EXECUTE on pg_switch_wal(): closing a segment proves a recovery point


def plan_backup(last: Manifest | None, base: Manifest | None, facts: ServerFacts, now: datetime,
                max_chain_age: timedelta, force_full: bool, *, incrementals: bool = True,
                wal_since_base: int = 0, max_wal_since_base: int | None = None) -> tuple[str, str]:
    """Return ("base" | "incremental" | "recovery-point", reason) for the next six-hourly run of the chain.

    Without `incrementals` (PostgreSQL 13-16, or summarize_wal off) the chain is one base backup plus
    the WAL archive: the run proves and records a recovery point on it, and takes a new base once
    the base is older than `max_chain_age` or `wal_since_base` bytes of WAL since its start pass
    `max_wal_since_base` (replaying that much would make a restore slow)."""
    if force_full:
        return "base", "a full base backup was requested"
    if last is None or base is None:
        return "base", "no complete physical backup yet"
    if last.physical.get("system_identifier") != facts.system_identifier:
        return "base", "the server is a different cluster than the chain's (system identifier changed)"
    if last.physical.get("timeline") != facts.timeline:
        return "base", f"the server moved to timeline {facts.timeline} (failover or restore) since the last backup"
    if now - base.finished > max_chain_age:
        return "base", f"the chain's base backup is older than {max_chain_age.days} days"
    if max_wal_since_base is not None and wal_since_base > max_wal_since_base:
        return "base", (f"{human_bytes(wal_since_base)} of WAL since the base passes {human_bytes(max_wal_since_base)}: "
                        "a new base keeps restores quick")
    if not incrementals:
        return "recovery-point", f"recovery point on the chain of {base.backup_id} (base and WAL)"
    return "incremental", f"incremental on top of {last.backup_id}"


def parse_lsn(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def segment_of(lsn: str, segment_size: int) -> int:
    return parse_lsn(lsn) // segment_size


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_id:08X}{segno % per_id:08X}"


def parse_segment(name: str, segment_size: int) -> tuple[int, int] | None:
    """Given a WAL file name, return (timeline, segment number), or None for other files (.history ...)."""
    match = _SEGMENT.match(name)
    if not match:
        return None
    per_id = 0x100000000 // segment_size
    return int(match.group(1), 16), int(match.group(2), 16) * per_id + int(match.group(3), 16)


def contiguous_run(available: set[int], first: int) -> int | None:
    """Return the last segment number of the unbroken run starting at `first`, or None when `first` is missing."""
    if first not in available:
        return None
    last = first
    while last + 1 in available:
        last += 1
    return last


def wal_to_delete(segments: dict[str, datetime], protected: list[tuple[int, int]], now: datetime,
                  keep: timedelta, segment_size: int) -> list[str]:
    """Given archived WAL files with their archive times and the segment ranges kept backups need
    to be consistent, return the files to delete: older than `keep` and needed by no kept backup."""
    doomed = []
    for name, archived in segments.items():
        if archived >= now - keep:
            continue
        parsed = parse_segment(name, segment_size)
        if parsed and any(low <= parsed[1] <= high for low, high in protected):
            continue
        doomed.append(name)
    return sorted(doomed)


def replay_from(backups: list[tuple[datetime, int]], now: datetime, keep: timedelta) -> int | None:
    """Given the kept physical backups as (finished, first WAL segment), return the first segment a
    point-in-time restore to any moment of the last `keep` may replay from: the start of the newest
    backup finished at or before now - keep (a restore to that moment starts from it), else of the
    oldest one; None without backups. Every archived segment from it on must stay: a base-and-WAL
    chain replays all WAL since its base, which may be older than `keep`."""
    if not backups:
        return None
    before = [start for finished, start in sorted(backups) if finished <= now - keep]
    return before[-1] if before else min(start for _, start in backups)


def find_wal_gaps(archived: dict[str, datetime], from_segment: int, timeline: int, segment_size: int) -> list[str]:
    """Given the archived WAL file names, return the names of segments of `timeline` missing from
    the archive between `from_segment` and the newest archived one (empty: no gap)."""
    on_timeline = {parsed[1] for parsed in (parse_segment(n, segment_size) for n in archived)
                   if parsed and parsed[0] == timeline}
    later = [s for s in on_timeline if s >= from_segment]
    if not later:
        return []
    return [segment_name(timeline, s, segment_size) for s in range(from_segment, max(later)) if s not in on_timeline]


class ChainBroken(LookupError):
    """A backup's chain misses a link: it cannot be restored."""


def resolve_chain(manifests: dict[str, Manifest], last_id: str) -> list[Manifest]:
    """Given complete physical backups by id, return the chain ending at `last_id`, base first.

    Raise ChainBroken naming the first missing link.
    """
    chain = [manifests[last_id]]
    while chain[-1].parent is not None:
        parent = chain[-1].parent
        if parent not in manifests:
            raise ChainBroken(f"backup {chain[-1].backup_id} needs {parent}, which is missing or incomplete: "
                              f"the chain cannot be restored past {parent}; take a new base backup "
                              "(incremental-backup with force_full=true)")
        chain.append(manifests[parent])
    return list(reversed(chain))


ARCHIVE_LAG = timedelta(hours=1)


class WalGap(LookupError):
    """The WAL archive misses segments the restore needs."""


def plan_wal(chain_end: Manifest, archived: dict[str, datetime], target_time: datetime | None) -> list[str]:
    """Given the chain's last backup and the archived WAL files with their archive times, return
    the files to replay after it, up to `target_time` (or all contiguous ones). Raise WalGap naming
    the missing segments, or saying that nothing archived reaches the target yet."""
    size, timeline = chain_end.physical["wal_segment_size"], chain_end.physical["timeline"]
    first = segment_of(chain_end.physical["end_lsn"], size)
    on_timeline = {parse_segment(n, size)[1]: (n, t) for n, t in archived.items()
                   if parse_segment(n, size) and parse_segment(n, size)[0] == timeline}
    later = sorted(s for s in on_timeline if s >= first)
    if target_time is None:
        last = contiguous_run(set(later), first)
        return [] if last is None else [on_timeline[s][0] for s in range(first, last + 1)]
    reaching = [s for s in later if on_timeline[s][1] >= target_time]
    if not reaching:
        newest = max((on_timeline[s][1] for s in later), default=None)
        raise WalGap(f"the WAL archive ends at {newest.isoformat() if newest else chain_end.finished_at}, before "
                     f"target_time {target_time.isoformat()}: nothing archived reaches it yet")
    missing = [segment_name(timeline, s, size) for s in range(first, reaching[0] + 1) if s not in on_timeline]
    if missing:
        raise WalGap(f"WAL missing between backup {chain_end.backup_id} and the target time: "
                     f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} ({len(missing)} segment(s))")
    # A file is archived some time after its last record was written, so the first one archived after
    # the target may still end before it: keep going until one archived well after the target (or the
    # unbroken run ends). PostgreSQL stops replaying at the target whatever it is given.
    end, run_end = reaching[0], contiguous_run(set(later), first)
    while end < run_end and on_timeline[end][1] < target_time + ARCHIVE_LAG:
        end += 1
    return [on_timeline[s][0] for s in range(first, end + 1)]
