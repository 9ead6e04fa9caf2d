"""Where a PostgreSQL server started as root keeps what its own user must reach: the decisions of
tasks/server_placement.py, without I/O."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import PurePosixPath

BINARIES_ROOT = "/usr/local/lib/ubertruck-ops"
DATA_ROOT = "/var/lib/ubertruck-ops/postgres"


def usable_by_others(mode: int) -> bool:
    """Given a file's or folder's st_mode, return True when a user with no claim on it (not its
    owner, not in its group) can use it: a folder passed through (o+x), a file read (o+r) and, when
    it is executable at all, run (o+x)."""
    if stat.S_ISDIR(mode):
        return bool(mode & stat.S_IXOTH)
    executable = mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bool(mode & stat.S_IROTH) and (not executable or bool(mode & stat.S_IXOTH))


def binaries_folder(version: str, digest: str) -> str:
    """Given a PostgreSQL version and the SHA-256 of an installation, return the folder its copy
    lives in: named by its digest, so a changed build gets a folder of its own, never a mixed one.
    Raise ValueError on a version or digest that could not be a plain folder name."""
    if not re.fullmatch(r"[0-9][0-9A-Za-z.]*", version) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"unexpected PostgreSQL version {version!r} or digest {digest!r}")
    return f"{BINARIES_ROOT}/pgsql-{version}-{digest[:16]}"


def data_folder_for(wanted: str) -> str:
    """Given the absolute path a server's folder was asked for, return its folder under DATA_ROOT:
    named for the reader after the path's last two parts (letters, digits, '-' and '_' only: the
    name reaches pg_ctl's shell) and told apart by a digest of the whole path, so the same place
    gets the same folder and two places never share one."""
    path = PurePosixPath(wanted)
    token = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    label = re.sub(r"[^A-Za-z0-9_]+", "-", f"{path.parent.name}-{path.name}").strip("-")[:40]
    return f"{DATA_ROOT}/{label + '-' if label else ''}{token}"
