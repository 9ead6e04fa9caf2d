"""Which backups to delete. Pure policy: no I/O, unit-tested.

Rules (the guide's 9.1, made safe):
- a full backup older than `keep_full_days` goes, except the newest complete full backup;
- an incremental older than `keep_incremental_days` goes;
- nothing a kept backup depends on (its parent chain) ever goes;
- folders without a manifest (a failed or running backup) go once older than the grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class BackupRecord:
    backup_id: str
    finished_at: datetime
    parent: str | None = None

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
        keep.add(max(fulls, key=lambda b: b.finished_at).backup_id)
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
