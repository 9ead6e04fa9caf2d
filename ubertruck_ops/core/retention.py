"""Which backups to delete. Pure policy: no I/O, unit-tested.

Rules (the guide's 9.1, made safe):
- a full backup older than `keep_full_days` goes, except the newest complete full backup;
- an incremental older than `keep_incremental_days` goes;
- nothing a kept backup depends on (its parent chain) ever goes;
- folders without a manifest (a failed or running backup) go once older than the grace;
- it fails closed: a folder whose manifest exists but cannot be read (a newer format, damaged,
  a read error) is never deleted, and nothing it might depend on goes either (an unreadable
  incremental keeps every physical backup before it: its parent could be any of them);
- it fails closed on time: when core/clock.py holds (this host's clock disagrees with the database
  server's or the repository's, or the history says the clock may have jumped), nothing is deleted
  by age; folders without a manifest still go (they hold no backup).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ubertruck_ops.core.text import human_seconds


@dataclass(frozen=True)
class BackupRecord:
    backup_id: str
    finished_at: datetime
    parent: str | None = None
    kind: str = ""          # logical, base, incremental ("" when unknown)

    @property
    def is_full(self) -> bool:
        return self.parent is None


def backups_to_delete(backups: list[BackupRecord], now: datetime, keep_full_days: int,
                      keep_incremental_days: int = 7) -> set[str]:
    """Given the complete backups and the clock, return the ids to delete."""
    by_id = {b.backup_id: b for b in backups}
    keep: set[str] = set()
    for record in backups:
        limit = keep_full_days if record.is_full else keep_incremental_days
        if record.finished_at >= now - timedelta(days=limit):
            keep.add(record.backup_id)
    fulls = [b for b in backups if b.is_full]
    if fulls:
        # Finish times are whole seconds: of two fulls finishing in the same one, keep the one that
        # started later (ids begin with the start time), whatever order they were listed in.
        keep.add(max(fulls, key=lambda b: (b.finished_at, b.backup_id)).backup_id)
    for backup_id in list(keep):
        parent = by_id[backup_id].parent
        while parent is not None and parent in by_id and parent not in keep:
            keep.add(parent)
            parent = by_id[parent].parent
    return {b.backup_id for b in backups} - keep


def stale_incomplete(folders: dict[str, datetime], complete: set[str], now: datetime,
                     grace: timedelta) -> list[str]:
    """Given backup ids found in the repository with their newest object's time, return the
    ids of incomplete ones (no manifest) old enough that no running backup can own them."""
    return sorted(backup_id for backup_id, newest in folders.items()
                  if backup_id not in complete and newest < now - grace)


@dataclass(frozen=True)
class RetentionPlan:
    expired: list[str]          # complete backups read and found expired
    leftovers: list[str]        # folders with no manifest key at all, older than the grace
    unreadable: list[str]       # folders whose manifest exists but could not be read: kept, reported
    held: str | None = None     # why nothing was deleted by age this run (core/clock.py), else None
    would_expire: list[str] = field(default_factory=list)   # what age alone would have deleted while held


PHYSICAL = ("base", "incremental")


def plan_retention(backups: list[BackupRecord], folders: dict[str, datetime], with_manifest: set[str],
                   unreadable: dict[str, str], now: datetime, keep_full_days: int, grace: timedelta,
                   keep_incremental_days: int = 7, *, hold: str | None) -> RetentionPlan:
    """Given the readable complete backups, every backup folder with its newest object's time, the
    folders holding a manifest key (readable or not), the unreadable ones ({backup id: kind named
    by the id}) and the clock's verdict (`hold`: why ages cannot be trusted this run, from
    core.clock.retention_hold), return what to delete. Only readable expired backups and folders
    without any manifest key ever go; an unreadable folder, and what an unreadable incremental may
    build on, stay; while held, no backup goes (what would have is listed in `would_expire`)."""
    expired = backups_to_delete(backups, now, keep_full_days, keep_incremental_days)
    for backup_id, kind in unreadable.items():
        if kind == "incremental":
            expired -= {b.backup_id for b in backups if b.kind in PHYSICAL and b.backup_id < backup_id}
    expired -= set(unreadable)
    leftovers = stale_incomplete(folders, with_manifest | set(unreadable), now, grace)
    if hold:
        return RetentionPlan([], leftovers, sorted(unreadable), hold, sorted(expired))
    return RetentionPlan(sorted(expired), leftovers, sorted(unreadable))


def clock_behind(backup_id: str, finished_at: datetime, others: list[BackupRecord]) -> str | None:
    """Given the backup just taken and the other complete backups, return a warning when it finished
    before the newest of them (this host's clock is behind, or the other host's ahead), else None."""
    newer = [b for b in others if b.backup_id != backup_id and b.finished_at > finished_at]
    if not newer:
        return None
    newest = max(newer, key=lambda b: b.finished_at)
    gap = human_seconds((newest.finished_at - finished_at).total_seconds())
    return (f"backup {backup_id} finished at {finished_at.isoformat()}, {gap} before "
            f"backup {newest.backup_id} already in the repository ({newest.finished_at.isoformat()}): is this host's "
            "clock behind? (check NTP: timedatectl). Nothing was deleted because of it; ages are judged by this "
            f"clock, and a restore without backup_id picks the newest by finished time, {newest.backup_id}")
