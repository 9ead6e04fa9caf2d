"""Our replication slot and the WAL archive, judged (pure; read by tasks/checks/replication.py).

The slot `wal-archive` streams through makes the primary keep every WAL segment the archiver has
not confirmed: a dead archiver lets it fill the primary's disk and stop the database, the worst
thing a backup tool can do. `max_slot_wal_keep_size` bounds that, at the price of a hole in the
archive once the server drops WAL the slot still needed (`wal_status = 'lost'`). So: a slot without
a consumer, retained WAL past the thresholds, a slot about to lose or having lost its WAL, and an
unbounded `max_slot_wal_keep_size` are alerts that say what to do.

The archive can also fall behind without any gap (an archiver that stopped yesterday leaves none):
`archive_lag` compares the newest archived segment with the server's current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.physical import parse_segment, segment_name, segment_of
from ubertruck_ops.core.text import human_bytes, human_seconds
from ubertruck_ops.core.units import unit_name

WAL_SLOT = "ubertruck_wal"     # the physical slot `wal-archive` (tasks/wal_stream.py) creates and streams through
MIB = 1 << 20
LAG_CHECK_SECONDS = 60.0       # watch lists the archive at most this often (an S3 listing takes seconds)


@dataclass(frozen=True)
class SlotFacts:
    """What the server says about our slot (pg_replication_slots) and its WAL settings."""

    slot: str
    exists: bool
    current_segment: str                  # pg_walfile_name(pg_current_wal_lsn())
    segment_size: int = 16 * MIB
    keep_size_mib: int = -1               # max_slot_wal_keep_size in MB; -1: unlimited
    active: bool = False
    active_pid: int | None = None
    wal_status: str | None = None         # reserved | extended | unreserved | lost
    restart_lsn: str | None = None        # None once the slot is lost
    retained_bytes: int | None = None     # pg_current_wal_lsn() - restart_lsn
    safe_wal_size: int | None = None      # bytes until the slot is in danger of losing WAL (None: unlimited)


def start_archiver(environment: str) -> str:
    """The fix for an archive nobody feeds: the command, and its unit (deployments/units.py)."""
    return (f"start `ubertruck-ops wal-archive --environment {environment}` "
            f"(systemctl start {unit_name('wal-archive', environment)})")


def drop_slot(slot: str) -> str:
    return f"if WAL archiving is abandoned, drop the slot: SELECT pg_drop_replication_slot('{slot}');"


def recommended_keep_size_mib(critical_mib: float) -> int:
    """The max_slot_wal_keep_size to suggest: twice the critical threshold, so the critical alert
    comes well before the server drops WAL the archive needs (and long before the disk is full)."""
    return int(2 * critical_mib)


def keep_size_setting(critical_mib: float) -> str:
    size = recommended_keep_size_mib(critical_mib)
    value = f"{size // 1024}GB" if size % 1024 == 0 else f"{size}MB"
    return f"ALTER SYSTEM SET max_slot_wal_keep_size = '{value}'; SELECT pg_reload_conf();"


def lost_range(facts: SlotFacts, newest_archived: str | None) -> tuple[str | None, str]:
    """Given a lost slot and the newest archived segment (None: unknown or none), return the first
    segment that may be missing from the archive (None when unknown) and the last one (the one
    before the server's current segment: the next archiver starts streaming where the server is)."""
    size = facts.segment_size
    timeline, current = parse_segment(facts.current_segment, size)
    last = segment_name(timeline, max(0, current - 1), size)
    if facts.restart_lsn:
        return segment_name(timeline, segment_of(facts.restart_lsn, size), size), last
    parsed = parse_segment(newest_archived, size) if newest_archived else None
    if parsed is None:
        return None, last
    return segment_name(timeline, parsed[1] + 1, size), last


def slot_verdict(facts: SlotFacts, *, environment: str, archives_wal: bool, warn_mib: float, critical_mib: float,
                 newest_archived: str | None = None) -> CheckResult:
    """Given the slot's facts, whether the environment's tier archives WAL, the retained-WAL
    thresholds in MiB and (for a lost slot) the newest archived segment, return the check: critical
    when the slot lost WAL, is about to, or retains more than `critical_mib`; high when it has no
    consumer, retains more than `warn_mib`, has used half of max_slot_wal_keep_size, or is missing
    while the tier archives WAL; ok otherwise. Every alert says the fix."""
    name, slot = f"wal slot {facts.slot}", facts.slot
    limits = f"<= {warn_mib:g} MiB retained"
    if not facts.exists:
        if not archives_wal:
            return checks.ok(name, "none", None, "no slot: this environment's tier archives no WAL")
        return checks.warn(name, "missing", "exists", f"no replication slot {slot}: nothing streams WAL into the "
                           f"archive; {start_archiver(environment)} (it creates the slot)", "high")
    retained = facts.retained_bytes or 0
    held = f"retains {human_bytes(retained)} of WAL on the primary"
    consumer = f"streaming to pid {facts.active_pid}" if facts.active else "no consumer"
    fix = f"{start_archiver(environment)}; {drop_slot(slot)}"
    if facts.wal_status == "lost":
        first, last = lost_range(facts, newest_archived)
        if first is None:
            hole = f"the segments up to {last} that were not archived are missing from the archive"
        elif first > last:
            hole = f"the archive holds every finished segment, but WAL after {last} is gone from the server"
        elif first == last:
            hole = f"segment {first} is missing from the archive"
        else:
            hole = f"segments {first} to {last} (at most) are missing from the archive"
        return checks.critical(name, "lost", "wal_status reserved", (
            f"slot {slot} was invalidated by the server (wal_status lost; max_slot_wal_keep_size "
            f"{facts.keep_size_mib} MB): {hole}; point-in-time "
            f"restore cannot cross the hole. Drop the slot (SELECT pg_drop_replication_slot('{slot}');), "
            f"{start_archiver(environment)} to create it again, then take a new base backup "
            "(incremental-backup with force_full=true)"))
    if facts.wal_status == "unreserved":
        return checks.critical(name, human_bytes(retained), "wal_status reserved", (
            f"slot {slot} {held} and is past max_slot_wal_keep_size ({facts.keep_size_mib} MB): the next checkpoint "
            f"removes WAL the archive still needs ({consumer}); {fix}"))
    if retained > critical_mib * MIB:
        return checks.critical(name, human_bytes(retained), f"<= {critical_mib:g} MiB retained", (
            f"slot {slot} {held}, more than {critical_mib:g} MiB ({consumer}): the primary's disk fills while "
            f"nothing archives; {fix}"))
    if not facts.active:
        return checks.warn(name, human_bytes(retained), "a consumer", (
            f"slot {slot} has no consumer: the primary keeps every WAL segment since {facts.restart_lsn} "
            f"({human_bytes(retained)} so far) until the archiver runs; {fix}"), "high")
    if retained > warn_mib * MIB:
        return checks.warn(name, human_bytes(retained), limits, (
            f"slot {slot} {held}, more than {warn_mib:g} MiB: the archiver ({consumer}) falls behind; check "
            f"`journalctl -u {unit_name('wal-archive', environment)}` and the repository"), "high")
    if facts.safe_wal_size is not None and facts.safe_wal_size <= retained:
        return checks.warn(name, human_bytes(retained), "safe_wal_size > retained", (
            f"slot {slot} {held}; {human_bytes(max(facts.safe_wal_size, 0))} more and the server drops WAL the "
            f"archive needs (max_slot_wal_keep_size {facts.keep_size_mib} MB); the archiver ({consumer}) must catch "
            "up"), "high")
    return checks.ok(name, human_bytes(retained), limits, f"slot {slot} {held}, {consumer}, wal_status "
                                                          f"{facts.wal_status}")


def keep_size_verdict(facts: SlotFacts, *, archives_wal: bool, critical_mib: float) -> CheckResult | None:
    """Given the server's max_slot_wal_keep_size, return a low-priority warning naming the setting to
    use when it is unlimited (-1) and our slot exists or the tier archives WAL; ok when bounded; None
    when the slot is no concern here."""
    if not (facts.exists or archives_wal):
        return None
    name = "max_slot_wal_keep_size"
    if facts.keep_size_mib < 0:
        return checks.warn(name, "-1 (unlimited)", "bounded", (
            f"max_slot_wal_keep_size = -1: a stopped archiver lets slot {facts.slot} keep WAL until the primary's "
            f"disk is full and the database stops; bound it (at most what pg_wal's disk can spare): "
            f"{keep_size_setting(critical_mib)}"), "low")
    return checks.ok(name, f"{facts.keep_size_mib} MB", "bounded",
                     f"the server drops slot WAL beyond {facts.keep_size_mib} MB instead of filling its disk")


def newest_archived(archived: dict[str, datetime], current_segment: str, segment_size: int) -> tuple[str, int, datetime] | None:
    """Given the archived WAL files (name -> time archived) and the server's current segment, return
    (name, segment number, archived at) of the newest archived segment on the server's timeline or an
    earlier one (a later timeline is another history), or None."""
    timeline = parse_segment(current_segment, segment_size)[0]
    found = [(parsed[1], parsed[0], name, at) for name, at in archived.items()
             if (parsed := parse_segment(name, segment_size)) and parsed[0] <= timeline]
    if not found:
        return None
    number, _, name, at = max(found)
    return name, number, at


def archive_lag(current_segment: str, archived: dict[str, datetime], now: datetime, segment_size: int, *,
                environment: str, critical_seconds: float, critical_segments: int) -> CheckResult:
    """Given the server's current WAL segment (timeline aware), the archived WAL files and now,
    return the check: critical when nothing is archived, or when finished segments wait unarchived
    and either more than `critical_segments` do or the newest archived one was archived more than
    `critical_seconds` ago; ok otherwise (the segment being written is never counted: a quiet
    server is not behind)."""
    name = "wal archive lag"
    limits = f"<= {critical_segments} segments, <= {critical_seconds:g} s"
    newest = newest_archived(archived, current_segment, segment_size)
    if newest is None:
        return checks.critical(name, "nothing archived", limits, (
            f"no WAL segment in the archive while the server writes {current_segment}: no point-in-time restore "
            f"is possible; {start_archiver(environment)}"))
    newest_name, number, at = newest
    behind = max(0, parse_segment(current_segment, segment_size)[1] - number - 1)
    age = max(0.0, (now - at).total_seconds())
    value = f"{behind} segments, {human_seconds(age)}"
    if behind == 0:
        return checks.ok(name, value, limits, f"newest archived {newest_name}; the server writes {current_segment}")
    if behind > critical_segments or age > critical_seconds:
        return checks.critical(name, value, limits, (
            f"the archive is {behind} finished segment(s) ({human_bytes(behind * segment_size)}) behind the server: "
            f"newest archived {newest_name}, {human_seconds(age)} ago, the server writes {current_segment}; "
            f"point-in-time restore cannot reach past {newest_name}: is the archiver running? "
            f"{start_archiver(environment)}"))
    return checks.ok(name, value, limits, f"{behind} finished segment(s) not archived yet; newest archived "
                                          f"{newest_name}, {human_seconds(age)} ago")


def lag_check_due(last_started: float | None, now: float, period: float = LAG_CHECK_SECONDS) -> bool:
    """Whether watch lists the archive again (monotonic seconds): at once, then every `period`."""
    return last_started is None or now - last_started >= period
