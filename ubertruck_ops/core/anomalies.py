"""Silent failures no peer catches: a backup that completes but stores far less than usual, lost
a table's rows, or ran far faster than the recent runs (a dump of the wrong database, a filter
left on, an empty schema after a bad migration). Pure: given the facts of this backup and of the
recent ones, say what looks wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median

from ubertruck_ops.core.manifest import DOTTED, QUOTED, row_count_key
from ubertruck_ops.core.text import human_bytes, human_seconds

# Below these a change is noise, not news: a table of a few rows, a backup of a few seconds.
MIN_TABLE_ROWS = 100
MIN_MEDIAN_SECONDS = 10.0


@dataclass(frozen=True)
class BackupFacts:
    backup_id: str
    size: int                                  # bytes stored, every object
    seconds: float                             # from start to finish
    rows: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest) -> BackupFacts:
        """The facts of a manifest (core.manifest.Manifest). Of a manifest whose row counts are keyed the
        earlier, ambiguous way only the tables whose key reads the same either way are kept, so a
        table with an odd name is not reported missing when the next backup quotes its key."""
        rows = dict(manifest.row_counts)
        if getattr(manifest, "row_count_keys", QUOTED) == DOTTED:
            rows = {key: n for key, n in rows.items() if key.count(".") == 1
                    and row_count_key(*key.split("."), QUOTED) == key}
        return cls(manifest.backup_id, sum(o.size for o in manifest.objects),
                   (manifest.finished - manifest.started).total_seconds(), rows)


def backup_anomalies(current: BackupFacts, recent: list[BackupFacts], size_drop_pct: float = 30,
                     rows_drop_pct: float = 10, faster_factor: float = 5, runs: int = 7) -> list[str]:
    """Given this backup and the earlier ones (oldest first), return one sentence per anomaly
    against the last `runs` of them: stored size more than `size_drop_pct` below their median; a
    table of the previous backup missing, or with more than `rows_drop_pct` fewer rows (tables of at
    least MIN_TABLE_ROWS); a run `faster_factor` times faster than their median duration (when that
    median is at least MIN_MEDIAN_SECONDS). Nothing to compare with: no anomaly."""
    window = recent[-runs:]
    if not window:
        return []
    found = []
    usual_size = median(f.size for f in window)
    if usual_size > 0 and current.size < usual_size * (1 - size_drop_pct / 100):
        drop = 100 * (1 - current.size / usual_size)
        found.append(f"stored size {human_bytes(current.size)} is {drop:.0f}% below the median of the last "
                     f"{len(window)} backups ({human_bytes(usual_size)})")
    previous = window[-1]
    for table, before in sorted(previous.rows.items()):
        now = current.rows.get(table)
        if now is None and before > 0:
            found.append(f"table {table} ({before:,} rows in {previous.backup_id}) is missing")
        elif now is not None and before >= MIN_TABLE_ROWS and now < before * (1 - rows_drop_pct / 100):
            found.append(f"table {table} lost {100 * (1 - now / before):.0f}% of its rows ({before:,} -> {now:,} "
                         f"since {previous.backup_id})")
    usual_seconds = median(f.seconds for f in window)
    if usual_seconds >= MIN_MEDIAN_SECONDS and current.seconds * faster_factor <= usual_seconds:
        found.append(f"took {human_seconds(current.seconds)}, {usual_seconds / max(current.seconds, 0.001):.0f}x "
                     f"faster than the median of the last {len(window)} ({human_seconds(usual_seconds)})")
    return found
