"""The backups in a repository: manifests, the latest complete backup, retention, clean-up.

A backup exists only when its manifest does; everything else in a backup folder is
either being written right now or left behind by a failure.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import MANIFEST_NAME, Manifest, backup_folder, backup_id_of_key, validate_backup_id
from ubertruck_ops.core.retention import BackupRecord, backups_to_delete, stale_incomplete
from ubertruck_ops.log import logger


class BackupNotFound(LookupError):
    """No complete backup matches the request."""


def list_manifests(repo) -> list[Manifest]:
    """Return the manifests of every complete backup, oldest first. Unreadable ones are logged and skipped."""
    manifests = []
    for item in repo.list(""):
        if item.key.endswith("/" + MANIFEST_NAME) and backup_id_of_key(item.key):
            try:
                manifests.append(Manifest.from_json(repo.get_bytes(item.key)))
            except ValueError as exc:
                logger().warning("skipping %s: %s", item.key, exc)
    return sorted(manifests, key=lambda m: m.finished_at)


@task(name="find-backup", cache_policy=NO_CACHE)
def find_backup(repo, backup_id: str | None = None, before: datetime | None = None, kind: str = "logical") -> Manifest:
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
    candidates = [m for m in list_manifests(repo) if m.kind == kind and (before is None or m.finished <= before)]
    if not candidates:
        when = f" finished before {before.isoformat()}" if before else ""
        raise BackupNotFound(f"no complete {kind} backup{when} in {repo.description}")
    return candidates[-1]


@task(name="write-manifest", cache_policy=NO_CACHE)
def write_manifest(repo, manifest: Manifest) -> str:
    """Write the manifest last: from this moment the backup exists."""
    key = f"{backup_folder(manifest.backup_id)}/{MANIFEST_NAME}"
    repo.put_bytes(key, manifest.to_json())
    return key


def discard_backup(repo, backup_id: str) -> None:
    """Remove whatever a failed backup wrote, so no half-written object is mistaken for a good one."""
    keys = [item.key for item in repo.list(backup_folder(backup_id) + "/")]
    if keys:
        repo.delete(keys)
        logger().info("removed %d object(s) of failed backup %s", len(keys), backup_id)


def discard_backup_quietly(repo, backup_id: str) -> None:
    """discard_backup for error paths: a failure to clean up is logged, never raised over the real error."""
    try:
        discard_backup(repo, backup_id)
    except Exception as exc:  # noqa: BLE001 - retention removes leftovers later; the original error matters
        logger().warning("could not remove the failed backup's objects (%s); retention will", exc)


@task(name="apply-retention", cache_policy=NO_CACHE)
def apply_retention(repo, block: BackupRepository, now: datetime) -> dict:
    """Delete expired backups and stale leftovers per core/retention.py; return what went."""
    listed = repo.list("")
    manifests = list_manifests(repo)
    records = [BackupRecord(m.backup_id, m.finished, m.parent) for m in manifests]
    expired = backups_to_delete(records, now, block.keep_full_days)
    newest: dict[str, datetime] = {}
    for item in listed:
        backup_id = backup_id_of_key(item.key)
        if backup_id:
            newest[backup_id] = max(newest.get(backup_id, item.modified), item.modified)
    grace = timedelta(hours=block.incomplete_grace_hours)
    leftovers = stale_incomplete(newest, {m.backup_id for m in manifests}, now, grace)
    doomed = set(expired) | set(leftovers)
    # The manifest goes first: a backup is never left looking complete with objects missing.
    keys = [item.key for item in listed if backup_id_of_key(item.key) in doomed]
    keys.sort(key=lambda k: not k.endswith(MANIFEST_NAME))
    if keys:
        repo.delete(keys)
    aborted = repo.abort_stale_uploads(grace)
    if doomed or aborted:
        logger().info("retention: %d expired, %d incomplete leftovers, %d stale uploads aborted",
                      len(expired), len(leftovers), aborted)
    return {"expired": sorted(expired), "incomplete_removed": leftovers, "uploads_aborted": aborted}


PHYSICAL_KINDS = ("base", "incremental")


@task(name="find-physical-chain", cache_policy=NO_CACHE)
def find_physical_chain(repo, before: datetime | None = None) -> list[Manifest]:
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


def latest_physical(repo) -> tuple[Manifest | None, Manifest | None]:
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
