"""Read a backup back: verify every object, prove the key decrypts, restore streams.

Verification reads everything before anything is written, so a flipped byte or a
wrong key stops a restore while the target is still untouched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.manifest import Manifest, backup_folder
from ubertruck_ops.core.restore_rules import FolderFacts
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import archive, postgres
from ubertruck_ops.tasks.crypto import DecryptionKeyError, GpgSession, explain_decrypt_failure, zstd_decompress_stage
from ubertruck_ops.tasks.execute import CommandFailed
from ubertruck_ops.tasks.repository import Repository, is_transient
from ubertruck_ops.tasks.retrying import network_retries
from ubertruck_ops.tasks.stream import ChecksumMismatch, checksum, load_stream


class BackupCorrupt(RuntimeError):
    """A stored object is missing or differs from its manifest entry. `unreadable_only`: every
    problem was a read that failed for a passing reason (worth reading again)."""

    unreadable_only = False


def transient_failure(exc: BaseException) -> bool:
    """A read of the repository that failed for a passing reason (5xx, throttling, a dropped
    connection): worth another attempt. A checksum mismatch or a refused read is not."""
    if isinstance(exc, BackupCorrupt):
        return exc.unreadable_only
    return is_transient(exc)


def _key(manifest: Manifest, name: str) -> str:
    return f"{backup_folder(manifest.backup_id)}/{name}"


@task(name="verify-objects", cache_policy=NO_CACHE, **network_retries(transient_failure))
def verify_objects(repo: Repository, manifest: Manifest) -> None:
    """Check size and SHA-256 of every object. Raise BackupCorrupt naming each bad object (retried
    when every bad object was only unreadable for a passing reason)."""
    problems = []
    passing = 0
    for obj in manifest.objects:
        try:
            found = checksum(repo, _key(manifest, obj.name))
        except Exception as exc:  # noqa: BLE001 - a missing object is a finding, not a crash
            problems.append(f"{obj.name}: cannot be read ({type(exc).__name__})")
            passing += is_transient(exc)
            continue
        if (found.size, found.sha256) != (obj.size, obj.sha256):
            problems.append(f"{obj.name}: stored bytes do not match the manifest (SHA-256 {found.sha256[:12]}..., "
                            f"expected {obj.sha256[:12]}...)")
    if problems:
        corrupt = BackupCorrupt(f"backup {manifest.backup_id} is damaged: " + "; ".join(problems))
        corrupt.unreadable_only = passing == len(problems)
        raise corrupt
    logger().info("all %d objects of %s match their checksums", len(manifest.objects), manifest.backup_id)


def read_object(repo: Repository, manifest: Manifest, role: str, gpg: GpgSession) -> bytes:
    """Decrypt a small object of a backup into memory.

    Raise DecryptionKeyError saying what to fix when the key does not decrypt it.
    """
    obj = manifest.object(role)
    if obj is None:
        raise BackupCorrupt(f"backup {manifest.backup_id} has no {role} object")
    try:
        return load_stream(repo, _key(manifest, obj.name), obj.sha256, [gpg.decrypt_stage(), zstd_decompress_stage()],
                           capture=True, timeout=300)
    except CommandFailed as exc:
        raise DecryptionKeyError(f"cannot decrypt backup {manifest.backup_id}: "
                                 f"{explain_decrypt_failure(exc.stderr, gpg.block)}") from None
    except ChecksumMismatch as exc:
        raise BackupCorrupt(str(exc)) from None


@task(name="read-roles", cache_policy=NO_CACHE, **network_retries(transient_failure))
def read_roles(repo: Repository, manifest: Manifest, gpg: GpgSession) -> dict:
    """Decrypt the small roles object: this proves the key works before the target is touched."""
    return json.loads(read_object(repo, manifest, "roles", gpg))


@task(name="restore-database-stream", cache_policy=NO_CACHE)
def restore_database(repo: Repository, manifest: Manifest, gpg: GpgSession, db: PostgresDatabase, database: str,
                     server_version_num: int) -> None:
    """Stream the dump into `database` (which must exist and be empty): decrypt | unzstd | pg_restore."""
    obj = manifest.object("database")
    stages = [gpg.decrypt_stage(), zstd_decompress_stage(), *postgres.pg_restore_stages(db, database, server_version_num)]
    try:
        load_stream(repo, _key(manifest, obj.name), obj.sha256, stages)
    except ChecksumMismatch as exc:
        raise BackupCorrupt(str(exc)) from None


@task(name="extract-backup", cache_policy=NO_CACHE)
def extract_object(repo: Repository, manifest: Manifest, role: str, gpg: GpgSession, destination: Path) -> None:
    """Stream one tar object of a backup into `destination`: decrypt | unzstd | tar -x."""
    obj = manifest.object(role)
    destination.mkdir(parents=True, exist_ok=True)
    try:
        load_stream(repo, _key(manifest, obj.name), obj.sha256,
                    [gpg.decrypt_stage(), zstd_decompress_stage(), archive.extract_stage(str(destination))])
    except ChecksumMismatch as exc:
        raise BackupCorrupt(str(exc)) from None


@task(name="extract-archives", cache_policy=NO_CACHE)
def extract_archives(repo: Repository, manifest: Manifest, gpg: GpgSession, destination: str) -> list[str]:
    """Extract the app and config archives into `destination`/app and `destination`/config."""
    done = []
    for role in ("app", "config"):
        obj = manifest.object(role)
        if obj is None:
            continue
        target = Path(destination) / role
        target.mkdir(parents=True, exist_ok=True)
        load_stream(repo, _key(manifest, obj.name), obj.sha256,
                    [gpg.decrypt_stage(), zstd_decompress_stage(), archive.extract_stage(str(target))])
        done.append(str(target))
    return done


def folder_facts(folder: str) -> FolderFacts:
    """Given an absolute folder to extract into, return what is on disk there: the folder or its
    nearest existing parent, whether that is a folder this worker may write in, and whether it is empty."""
    asked = Path(folder)
    existing = asked
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    is_dir = existing.is_dir()
    writable = is_dir and os.access(existing, os.W_OK | os.X_OK)
    # Only a writable folder that is the one asked for is listed (a parent's entries are not ours to read).
    empty = not (is_dir and writable and existing == asked and any(asked.iterdir()))
    return FolderFacts(str(existing), is_dir, writable, empty)
