"""The WAL archive's layout in the repository and the push of one segment, without Prefect: the
one implementation behind `ubertruck-ops wal-push` (PostgreSQL's archive_command, one process per
segment, which must not pay Prefect's import) and WalStreamer (tasks/wal.py).

Layout: wal/<file>.zst.gpg plus wal/<file>.json (sizes, SHA-256 of the plaintext and of the
stored bytes, archive time), the sidecar written last: a segment is archived only with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ubertruck_ops.core.manifest import iso, utc_now
from ubertruck_ops.tasks.crypto import KeyMaterial, gpg_session, zstd_compress_stage
from ubertruck_ops.tasks.repository import Repository, RepositoryError
from ubertruck_ops.tasks.stream import store_stream

PREFIX = "wal/"
_ABSENT_CODES = {"NoSuchKey", "404", "NotFound"}


class WalArchiveError(RuntimeError):
    """A segment cannot be archived or fetched as asked."""


def wal_keys(name: str) -> tuple[str, str]:
    """Return the keys of a WAL file's encrypted data and of its sidecar. Raise WalArchiveError on a
    name that is not a plain file name."""
    if not name or "/" in name or name.startswith("."):
        raise WalArchiveError(f"not a WAL file name: {name!r}")
    return f"{PREFIX}{name}.zst.gpg", f"{PREFIX}{name}.json"


def push_file(keys: KeyMaterial, path: str, repo: Repository) -> str:
    """Archive the WAL file at `path`, encrypted with `keys`; return 'archived' or 'already archived'.

    Archiving the same content again succeeds (PostgreSQL retries after a crash); different content
    under an archived name is refused (WalArchiveError), as archive_command must. A sidecar that
    cannot be read for another reason than its absence (network, permissions) fails the push, so
    PostgreSQL keeps the segment and retries: an unreadable sidecar is never taken for "not archived".
    """
    name = os.path.basename(path)
    data_key, meta_key = wal_keys(name)
    data = Path(path).read_bytes()
    plain_sha = hashlib.sha256(data).hexdigest()
    existing = read_sidecar(repo, meta_key)
    if existing is not None:
        if existing.get("plain_sha256") == plain_sha:
            return "already archived"
        raise WalArchiveError(f"{name} is already archived with different content: refusing to overwrite it")
    with gpg_session(keys) as gpg:
        written = store_stream(repo, data_key, [zstd_compress_stage(1), gpg.encrypt_stage()], feed=data, timeout=600)
    meta = {"name": name, "size": len(data), "plain_sha256": plain_sha, "stored_size": written.size,
            "stored_sha256": written.sha256, "archived_at": iso(utc_now())}
    repo.put_bytes(meta_key, json.dumps(meta).encode())
    return "archived"


def read_sidecar(repo: Repository, key: str) -> dict | None:
    """The sidecar under `key`, or None when there is none. Raise WalArchiveError when it is there but
    not a sidecar, and the repository's error when it cannot be read."""
    try:
        raw = repo.get_bytes(key)
    except FileNotFoundError:
        return None
    except RepositoryError as exc:
        error = getattr(exc.__cause__, "response", None) or {}
        if str(error.get("Error", {}).get("Code", "")) in _ABSENT_CODES:
            return None
        raise
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise WalArchiveError(f"{key} in the repository is not a WAL sidecar: look at it before archiving again")
    return meta
