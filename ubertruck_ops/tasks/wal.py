"""The WAL archive in the repository: push one segment (PostgreSQL's archive_command), list,
fetch for a point-in-time restore, retention.

The layout and the push itself live in tasks/wal_store.py (no Prefect there: `wal-push` runs one
process per segment): wal/<file>.zst.gpg plus wal/<file>.json, the sidecar written last. The
continuous archiver (`wal-archive`, WalStreamer) lives in tasks/wal_stream.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.core.physical import wal_to_delete
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.crypto import GpgSession, zstd_decompress_stage
from ubertruck_ops.tasks.repository import Repository, is_transient
from ubertruck_ops.tasks.retrying import network_retries
from ubertruck_ops.tasks.stream import load_stream
from ubertruck_ops.tasks.wal_store import PREFIX, WalArchiveError, push_file
from ubertruck_ops.tasks.wal_store import wal_keys as _keys
from ubertruck_ops.tasks.wal_stream import WalStreamer

__all__ = ["PREFIX", "WalArchiveError", "WalStreamer", "apply_wal_retention", "archived_files", "fetch_segments",
           "push_segment"]


def push_segment(env: Environment, path: str, repo: Repository) -> str:
    """Archive the WAL file at `path` with the environment's key (wal_store.push_file): the same
    content again succeeds, different content under an archived name is refused."""
    return push_file(env.encryption, path, repo)


def archived_files(repo: Repository) -> dict[str, datetime]:
    """Return every archived WAL file name with the time its sidecar was written."""
    found = {}
    for item in repo.list(PREFIX):
        name = item.key[len(PREFIX):]
        if name.endswith(".json"):
            found[name[:-len(".json")]] = item.modified
    return found


@task(name="fetch-wal", cache_policy=NO_CACHE, **network_retries(is_transient))
def fetch_segments(repo: Repository, names: list[str], gpg: GpgSession, destination: Path) -> int:
    """Decrypt the named WAL files into `destination` (the restore's private folder), checking both
    checksums. Return the bytes fetched."""
    destination.mkdir(parents=True, exist_ok=True, mode=0o700)
    destination.chmod(0o700)
    total = 0
    for name in names:
        data_key, meta_key = _keys(name)
        meta = json.loads(repo.get_bytes(meta_key))
        plain = load_stream(repo, data_key, meta["stored_sha256"], [gpg.decrypt_stage(), zstd_decompress_stage()],
                            capture=True, timeout=600)
        if hashlib.sha256(plain).hexdigest() != meta["plain_sha256"]:
            raise WalArchiveError(f"WAL file {name} decrypts to different bytes than were archived")
        _write_private(destination / name, plain)
        total += len(plain)
    return total


def _write_private(path: Path, data: bytes) -> None:
    """Plaintext WAL is the database's content: 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, 0o600)
        handle.write(data)


@task(name="wal-retention", cache_policy=NO_CACHE)
def apply_wal_retention(repo: Repository, protected: list[tuple[int, int]], now: datetime, keep: timedelta,
                        segment_size: int) -> int:
    """Delete archived WAL older than `keep` that no kept backup needs; return how many files went."""
    doomed = wal_to_delete(archived_files(repo), protected, now, keep, segment_size)
    keys = [k for name in doomed for k in reversed(_keys(name))]   # sidecar first
    if keys:
        repo.delete(keys)
        logger().info("WAL retention: %d file(s) deleted", len(doomed))
    return len(doomed)
