"""The backups in a repository: manifests, the latest complete backup, retention, clean-up.

A backup exists only when its manifest does; everything else in a backup folder is
either being written right now or left behind by a failure.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.clock import ClockReading, retention_hold
from ubertruck_ops.core.manifest import (
    MANIFEST_NAME,
    Manifest,
    backup_folder,
    backup_id_of_key,
    is_manifest_key,
    kind_of_id,
    validate_backup_id,
)
from ubertruck_ops.core.retention import BackupRecord, clock_behind, plan_retention
from ubertruck_ops.core.text import human_bytes, one_line
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.repository import Repository, is_transient
from ubertruck_ops.tasks.retrying import network_retries


class BackupNotFound(LookupError):
    """No complete backup matches the request."""


class RepositoryFull(RuntimeError):
    """A backup failed because the repository has no space left; the message says what retention freed."""


class FailedAfterBackup(RuntimeError):
    """A step after the manifest failed: the run fails, the backup is complete and kept."""

    def __init__(self, backup_id: str, step: str, exc: BaseException):
        self.backup_id = backup_id
        super().__init__(f"backup {backup_id} is complete and kept; the run failed after it at step '{step}': "
                         f"{one_line(exc)}")


@dataclass
class Scan:
    """What a repository holds: every object, the manifests read (oldest first), and by key why the
    others could not be read."""

    listed: list
    manifests: list[Manifest]
    unreadable: dict[str, str] = field(default_factory=dict)

    def unreadable_ids(self) -> dict[str, str]:
        """Return {backup id: the kind its id names} of the folders whose manifest could not be read."""
        return {backup_id_of_key(key): kind_of_id(backup_id_of_key(key)) for key in self.unreadable}


def scan(repo: Repository) -> Scan:
    """List the repository and read every manifest. A manifest that cannot be read - it does not parse,
    a newer release wrote it, it names another backup, or reading it failed - is logged as a warning and
    listed in `unreadable`, never raised: whoever deletes must keep it, whoever restores must skip it."""
    listed = repo.list("")
    manifests, unreadable = [], {}
    for item in listed:
        if not is_manifest_key(item.key):
            continue
        try:
            manifest = Manifest.from_json(repo.get_bytes(item.key))
        except ValueError as exc:
            unreadable[item.key] = str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - whatever stops us reading it, retention must keep the backup
            unreadable[item.key] = f"could not be read: {one_line(exc)}"
            continue
        if manifest.backup_id != backup_id_of_key(item.key):
            unreadable[item.key] = f"it names backup {manifest.backup_id}, not its folder's"
            continue
        manifests.append(manifest)
    for key, why in unreadable.items():
        logger().warning("manifest %s is unreadable (%s): that backup is kept, never deleted by retention, and "
                         "not used for restores; check it (a newer release may read it)", key, why)
    return Scan(listed, sorted(manifests, key=lambda m: m.run_order), unreadable)


def list_manifests(repo: Repository) -> list[Manifest]:
    """Return the manifests of every complete backup, oldest first. Unreadable ones are logged and left out."""
    return scan(repo).manifests


def newest(manifests: list[Manifest], kind: str, before: datetime | None = None) -> Manifest | None:
    """Given manifests oldest first, return the newest of `kind` finished at or before `before`, if any."""
    candidates = [m for m in manifests if m.kind == kind and (before is None or m.finished <= before)]
    return candidates[-1] if candidates else None


@task(name="find-backup", cache_policy=NO_CACHE, **network_retries(is_transient))
def find_backup(repo: Repository, backup_id: str | None = None, before: datetime | None = None, kind: str = "logical") -> Manifest:
    """Return the manifest of `backup_id`, or of the newest complete backup (finished at or before
    `before` when given). Raise BackupNotFound saying what exists."""
    if backup_id:
        validate_backup_id(backup_id)
        try:
            return Manifest.from_json(repo.get_bytes(f"{backup_folder(backup_id)}/{MANIFEST_NAME}"))
        except (FileNotFoundError, KeyError) as exc:
            raise BackupNotFound(f"backup {backup_id} has no manifest in {repo.description}: it does not exist "
                                 "or never completed") from exc
        except Exception as exc:  # S3 NoSuchKey arrives as a ClientError
            if "NoSuchKey" in str(exc) or "Not Found" in str(exc) or "404" in str(exc):
                raise BackupNotFound(f"backup {backup_id} has no manifest in {repo.description}") from exc
            raise
    found = newest(list_manifests(repo), kind, before)
    if found is None:
        when = f" finished before {before.isoformat()}" if before else ""
        raise BackupNotFound(f"no complete {kind} backup{when} in {repo.description}")
    return found


@task(name="write-manifest", cache_policy=NO_CACHE)
def write_manifest(repo: Repository, manifest: Manifest) -> str:
    """Write the manifest last: from this moment the backup exists."""
    key = f"{backup_folder(manifest.backup_id)}/{MANIFEST_NAME}"
    repo.put_bytes(key, manifest.to_json())
    return key


def object_clock(repo: Repository, key: str, before: datetime, after: datetime) -> ClockReading | None:
    """Given an object written between `before` and `after` by this host's clock, return the
    repository's time for it (S3's LastModified, the folder's mtime) as a reading of its clock;
    None when the listing does not show it."""
    listed = [item for item in repo.list(key.rsplit("/", 1)[0] + "/") if item.key == key]
    if not listed:
        return None
    # S3 keeps whole seconds: the object may carry a time up to a second before `before`.
    return ClockReading(f"the repository ({repo.description})", before - timedelta(seconds=1), after,
                        listed[0].modified)


def discard_backup(repo: Repository, backup_id: str) -> None:
    """Remove whatever a failed backup wrote, so no half-written object is mistaken for a good one."""
    keys = [item.key for item in repo.list(backup_folder(backup_id) + "/")]
    if keys:
        repo.delete(keys)
        logger().info("removed %d object(s) of failed backup %s", len(keys), backup_id)


def discard_backup_quietly(repo: Repository, backup_id: str) -> bool:
    """discard_backup for error paths: a failure to clean up is logged (return False), never raised over the
    real error."""
    try:
        discard_backup(repo, backup_id)
        return True
    except Exception as exc:  # noqa: BLE001 - retention removes leftovers later; the original error matters
        logger().warning("could not remove the failed backup's objects (%s); retention will", exc)
        return False


@task(name="apply-retention", cache_policy=NO_CACHE)
def apply_retention(repo: Repository, block: BackupRepository, now: datetime, taken: Manifest | None = None,
                    readings: list[ClockReading] | None = None) -> dict:
    """Delete expired backups and stale leftovers per core/retention.py; return what went, what was
    kept because its manifest is unreadable, and (given the backup just `taken`) a clock warning.

    `readings` are the other clocks read this run (core/clock.py): without one that agrees with
    this host's, or when the newest earlier backup is older than the schedule allows, nothing is
    deleted by age and `held` says why (logged as a warning; the flow tells Slack)."""
    found = scan(repo)
    records = [BackupRecord(m.backup_id, m.finished, m.parent, m.kind) for m in found.manifests]
    newest_object: dict[str, datetime] = {}
    for item in found.listed:
        backup_id = backup_id_of_key(item.key)
        if backup_id:
            newest_object[backup_id] = max(newest_object.get(backup_id, item.modified), item.modified)
    with_manifest = {backup_id_of_key(item.key) for item in found.listed if is_manifest_key(item.key)}
    grace = timedelta(hours=block.incomplete_grace_hours)
    earlier = [r.finished_at for r in records if taken is None or r.backup_id != taken.backup_id]
    hold = retention_hold(list(readings or []), max(earlier, default=None), now)
    plan = plan_retention(records, newest_object, with_manifest, found.unreadable_ids(), now, block.keep_full_days,
                          grace, hold=hold)
    doomed = set(plan.expired) | set(plan.leftovers)
    # The manifest goes first: a backup is never left looking complete with objects missing.
    doomed_items = [item for item in found.listed if backup_id_of_key(item.key) in doomed]
    keys = sorted((item.key for item in doomed_items), key=lambda k: not k.endswith(MANIFEST_NAME))
    if keys:
        repo.delete(keys)
    # A multipart upload's age is judged by this host's clock too: one running ahead would abort uploads in flight.
    aborted = 0 if hold else repo.abort_stale_uploads(grace)
    freed = sum(item.size for item in doomed_items)
    if doomed or aborted:
        logger().info("retention: %d expired, %d incomplete leftovers, %d stale uploads aborted, %s freed",
                      len(plan.expired), len(plan.leftovers), aborted, human_bytes(freed))
    if hold:
        spared = f" (age alone would have deleted {len(plan.would_expire)}: {', '.join(plan.would_expire)})" \
            if plan.would_expire else ""
        logger().warning("retention held: %s%s", hold, spared)
    clock = clock_behind(taken.backup_id, taken.finished, records) if taken else None
    if clock:
        logger().warning("%s", clock)
    return {"expired": plan.expired, "incomplete_removed": plan.leftovers, "uploads_aborted": aborted,
            "bytes_freed": freed, "unreadable": found.unreadable, "clock_warning": clock,
            "held": _held_line(plan), "would_expire": plan.would_expire}


def _held_line(plan) -> str | None:
    """The sentence the notice and the run's result carry when retention was held."""
    if not plan.held:
        return None
    spared = f"; {len(plan.would_expire)} backup(s) old enough to go were kept" if plan.would_expire else ""
    return f"retention held: {plan.held}{spared}"


def clean_up_failed_backup(repo: Repository, block: BackupRepository, backup_id: str | None, now: datetime,
                           readings: list[ClockReading] | None = None) -> dict:
    """After a backup failed before its manifest: remove what it wrote, then apply retention anyway
    (on a full repository nothing else would ever free space). Best effort: return retention's
    report (without its keys when it failed too: logged, never raised over the backup's own error)
    and whether the failed backup's objects are gone."""
    removed = discard_backup_quietly(repo, backup_id) if backup_id else True
    try:
        return {"failed_backup_removed": removed, **apply_retention(repo, block, now, readings=readings)}
    except Exception as exc:  # noqa: BLE001 - the backup's own error is the one to report
        logger().warning("retention after the failed backup failed too (%s)", one_line(exc))
        return {"failed_backup_removed": removed}


def out_of_space(exc: BaseException) -> bool:
    """Return True when `exc`, or an error it came from, says no space is left on the device."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def repository_full(description: str, exc: BaseException, retention: dict) -> RepositoryFull:
    """Given the out-of-space error and what retention did afterwards, return the error that says so."""
    freed, expired = retention.get("bytes_freed", 0), retention.get("expired", [])
    left = ("left no manifest and no partial object" if retention.get("failed_backup_removed")
            else "left no manifest (its partial objects could not be removed yet: retention removes them later)")
    if "expired" not in retention:
        after = "retention could not run afterwards (see the log), so nothing was freed"
    elif retention.get("held"):
        after = f"nothing expired was freed: {retention['held']}"
    elif expired or freed:
        after = (f"retention then freed {human_bytes(freed)} ({len(expired)} expired backup(s)"
                 f"{': ' + ', '.join(expired) if expired else ''}), so the next backup has that much more room")
    else:
        after = ("retention found nothing expired to free: add space, or lower keep_full_days in the "
                 "repository block")
    return RepositoryFull(f"the backup repository {description} is full (no space left on device): the backup "
                          f"failed and {left}; {after}. Error: {one_line(exc)}")


PHYSICAL_KINDS = ("base", "incremental")


@task(name="find-physical-chain", cache_policy=NO_CACHE)
def find_physical_chain(repo: Repository, before: datetime | None = None) -> list[Manifest]:
    """Return the chain (base first) of the newest physical backup finished at or before `before`.

    Raise BackupNotFound when there is none, ChainBroken when a link is missing.
    """
    from ubertruck_ops.core.physical import resolve_chain

    physical = [m for m in list_manifests(repo) if m.kind in PHYSICAL_KINDS]
    candidates = [m for m in physical if before is None or m.finished <= before]
    if not candidates:
        when = f" finished before {before.isoformat()}" if before else ""
        raise BackupNotFound(f"no complete physical backup{when} in {repo.description}")
    return resolve_chain({m.backup_id: m for m in physical}, candidates[-1].backup_id)


def latest_physical(repo: Repository) -> tuple[Manifest | None, Manifest | None]:
    """Return (the newest physical backup, its chain's base), or (None, None); a broken chain counts as none."""
    from ubertruck_ops.core.physical import ChainBroken, resolve_chain

    physical = [m for m in list_manifests(repo) if m.kind in PHYSICAL_KINDS]
    if not physical:
        return None, None
    try:
        chain = resolve_chain({m.backup_id: m for m in physical}, physical[-1].backup_id)
    except ChainBroken as exc:
        logger().warning("%s", exc)
        return None, None
    return chain[-1], chain[0]
