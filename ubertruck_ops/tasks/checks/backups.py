"""Checks on the backup repository: last night's backup complete, recent and restorable by its
manifest (every object's size and SHA-256); backup sizes and durations per day."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
from ubertruck_ops.core.anomalies import BackupFacts, backup_anomalies
from ubertruck_ops.core.checks import CRITICAL, CheckResult
from ubertruck_ops.core.text import human_bytes
from ubertruck_ops.tasks import catalog, load
from ubertruck_ops.tasks.repository import Repository


def last_backup(repo: Repository, limits: CheckThresholds) -> CheckResult:
    """The newest complete nightly backup is younger than the limit and every object matches its
    manifest: critical otherwise (no backup means no recovery). A manifest that cannot be read (a
    newer format, damaged) is a warning naming its key: retention keeps that backup until someone looks."""
    name = "last night's backup"
    found = catalog.scan(repo)
    unreadable = ""
    if found.unreadable:
        # The keys first: the detail is cut at 300 characters.
        unreadable = (f"; {len(found.unreadable)} unreadable manifest(s), kept by retention: "
                      + ", ".join(sorted(found.unreadable)) + " ("
                      + "; ".join(why for _, why in sorted(found.unreadable.items())) + ")")
    manifest = catalog.newest(found.manifests, "logical")
    if manifest is None:
        return checks.critical(name, "none", "a complete backup",
                               f"no complete backup in {repo.description}{unreadable}"[:300])
    age_hours = (datetime.now(UTC) - manifest.finished).total_seconds() / 3600
    too_old = checks.above(name, age_hours, [(limits.backup_max_age_hours, CRITICAL, "critical")], " h",
                           f"newest backup {manifest.backup_id} is {age_hours:.0f} h old{unreadable}"[:300])
    if too_old.status != checks.OK:
        return too_old
    try:
        load.verify_objects.fn(repo, manifest)
    except load.BackupCorrupt as exc:
        return checks.critical(name, "damaged", "checksums match", f"{exc}{unreadable}"[:300])
    size = sum(o.size for o in manifest.objects)
    detail = (f"{manifest.backup_id}: {age_hours:.1f} h old, {len(manifest.objects)} objects "
              f"({human_bytes(size)}) match their manifest")
    odd = anomalies_of(found.manifests, manifest, limits)
    if odd:
        return checks.warn(name, f"{len(odd)} anomal{'y' if len(odd) == 1 else 'ies'}", "like the recent backups",
                           f"{manifest.backup_id} is complete but unlike the recent ones: {'; '.join(odd)}"[:300],
                           "high")
    if found.unreadable:
        keys = ", ".join(sorted(found.unreadable))
        reasons = "; ".join(why for _, why in sorted(found.unreadable.items()))
        return checks.warn(name, f"{len(found.unreadable)} unreadable", "every manifest readable",
                           f"{len(found.unreadable)} unreadable manifest(s), kept by retention: {keys}; newest backup "
                           f"{manifest.backup_id} is fine ({reasons})"[:300], "medium")
    return checks.ok(name, manifest.backup_id, f"<= {limits.backup_max_age_hours} h, checksums match", detail)


def anomalies_of(manifests: list, manifest, limits: CheckThresholds) -> list[str]:
    """What looks wrong about `manifest` (a logical backup) against the logical backups among
    `manifests` that ran before it (core/anomalies.py decides)."""
    earlier = sorted((m for m in manifests if m.kind == manifest.kind and m.run_order < manifest.run_order),
                     key=lambda m: m.run_order)
    return backup_anomalies(BackupFacts.of(manifest), [BackupFacts.of(m) for m in earlier],
                            limits.backup_size_drop_pct, limits.backup_rows_drop_pct, limits.backup_faster_factor,
                            limits.backup_compare_runs)


def backups_per_day(repo: Repository) -> dict[str, dict]:
    """Return {YYYY-MM-DD: {count, bytes, seconds}} of complete backups by the day they finished (UTC)."""
    days: dict[str, dict] = defaultdict(lambda: {"count": 0, "bytes": 0, "seconds": 0.0})
    for manifest in catalog.list_manifests(repo):
        day = days[manifest.finished.date().isoformat()]
        day["count"] += 1
        day["bytes"] += sum(o.size for o in manifest.objects)
        day["seconds"] += (manifest.finished - manifest.started).total_seconds()
    return dict(days)
