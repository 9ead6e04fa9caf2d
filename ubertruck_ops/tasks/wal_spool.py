"""The WAL archiver's spool: finished WAL segments on this host's disk until the repository holds them.

    <state dir>/<environment>/wal-spool-<slot>/     0700, owned by the archiver's user
        lock        flock()ed by the one archiver using the spool; holds its pid and host name
        incoming/   pg_receivewal's folder: the segment being received (<name>.partial), and a hard
                    link to the newest finished one (the marker: pg_receivewal resumes after it)
        ready/      finished segments and timeline history files waiting for the repository

pg_receivewal fsyncs a segment (and its folder) when it finishes it, and only then reports it
flushed, which is what lets the server recycle it: a segment is on this disk before the server
may drop it. It moves into ready/ by a hard link (no copy) and leaves the spool only once
archived. The spool holds plaintext WAL, the same bytes the database host keeps in pg_wal: it is
private and refused when anyone else could read or swap it.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import stat
from pathlib import Path

from ubertruck_ops.log import logger
from ubertruck_ops.tasks.repository import private_folders
from ubertruck_ops.tasks.state import state_dir

SEGMENT = re.compile(r"^[0-9A-F]{24}$")
HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")
PARTIAL = ".partial"
SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


class ArchiverRefused(RuntimeError):
    """The archiver must not run: another one holds the slot or the spool, or the spool is unsafe."""


def spool_path(environment: str, slot: str) -> Path:
    """Return the spool folder of `environment`'s archiver on `slot`. Raise ValueError on a slot
    name PostgreSQL would not take (it becomes part of a path)."""
    if not SLOT_NAME.match(slot):
        raise ValueError(f"replication slot name {slot!r}: use lowercase letters, digits and underscores (at most 63)")
    return state_dir(environment) / f"wal-spool-{slot}"


def _fsync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.ready_dir = self.root / "ready"
        self._lock: int | None = None

    def open(self, what: str = "") -> Spool:
        """Create the spool (0700) or find it again, check that it is ours alone, and lock it.
        Raise ArchiverRefused when it is not private, or another archiver holds it."""
        private_folders(self.root.parent, self.root.parent.parent)
        self._check_parent()                             # before anything is made inside it
        for folder in (self.root, self.incoming, self.ready_dir):
            if not os.path.lexists(folder):
                folder.mkdir(mode=0o700)
                folder.chmod(0o700)                      # whatever the umask
            self._check_private(folder, folder=True)
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:       # ELOOP: a symbolic link in its place
            raise ArchiverRefused(f"cannot open the WAL spool's lock {self.root / 'lock'} ({exc.strerror}): look at "
                                  "it - someone else may have put it there - and move it away") from None
        try:
            self._check_private(self.root / "lock", folder=False, fd=fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            os.close(fd)
            who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise ArchiverRefused(f"another wal-archive ({who}) uses the spool {self.root}{what}: only one "
                                  "archiver may use a slot; stop it first") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._lock = fd
        for folder in (self.incoming, self.ready_dir):
            for entry in os.scandir(folder):
                self._check_private(Path(entry.path), folder=False)
        return self

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)     # releases the flock
            self._lock = None

    def _check_parent(self) -> None:
        """Whoever may write to the folder holding the spool could put a spool of theirs in its place."""
        info = os.lstat(self.root.parent)
        if stat.S_ISLNK(info.st_mode) or info.st_uid not in (os.geteuid(), 0) or info.st_mode & 0o022:
            raise ArchiverRefused(f"the folder holding the WAL spool, {self.root.parent}, is a symbolic link or "
                                  f"writable by others (mode {stat.S_IMODE(info.st_mode):04o}, owner uid "
                                  f"{info.st_uid}): make it a 0700 folder owned by the archiver's user (or set "
                                  "UBERTRUCK_STATE_DIR to such a folder)")

    def _check_private(self, path: Path, folder: bool, fd: int | None = None) -> os.stat_result:
        """Refuse a symbolic link, another kind of file, another owner, and a folder open to others.
        A file's group and other bits are dropped instead: pg_receivewal gives its files the server's
        data directory mode (0640 with group access), and the 0700 folders keep them private anyway."""
        info = os.fstat(fd) if fd is not None else os.lstat(path)
        kind = stat.S_ISDIR(info.st_mode) if folder else stat.S_ISREG(info.st_mode)
        problem = ("a symbolic link" if stat.S_ISLNK(info.st_mode) else
                   f"not a {'folder' if folder else 'regular file'}" if not kind else
                   f"owned by uid {info.st_uid}, not by this archiver's user" if info.st_uid != os.geteuid() else
                   f"open to others (mode {stat.S_IMODE(info.st_mode):04o})" if folder and info.st_mode & 0o077 else
                   "")
        if problem:
            raise ArchiverRefused(f"the WAL spool's {path} is {problem}: the spool holds plaintext WAL and must be "
                                  "this user's alone (0700 folders). Look at it - someone else may have put it "
                                  "there - then fix its owner and mode, or move it away")
        if not folder and info.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700, follow_symlinks=False)
        return info

    def _fresh(self, name: str) -> bool:
        """A file pg_receivewal finished and we have not collected yet: collected ones are made
        read-only (0400), pg_receivewal's are writable."""
        return bool(self._check_private(self.incoming / name, folder=False).st_mode & stat.S_IWUSR)

    def collect(self) -> list[str]:
        """Move what pg_receivewal finished from incoming/ to ready/ (a hard link each: no copy) and
        keep the newest finished segment in incoming/ as its marker; return the names that moved."""
        names = sorted(os.listdir(self.incoming))
        segments = [n for n in names if SEGMENT.match(n)]
        histories = [n for n in names if HISTORY.match(n)]
        fresh = [n for n in segments + histories if self._fresh(n)]
        for name in fresh:
            target = self.ready_dir / name
            if os.path.lexists(target):
                os.unlink(target)        # the same segment streamed again: the same bytes
            os.chmod(self.incoming / name, 0o400)
            os.link(self.incoming / name, target, follow_symlinks=False)
        if fresh:
            _fsync_folder(self.ready_dir)
        stale = segments[:-1] + histories
        for name in stale:
            os.unlink(self.incoming / name)
        if fresh or stale:
            _fsync_folder(self.incoming)
        return fresh

    def ready(self) -> list[str]:
        """The files waiting for the repository, oldest first (a timeline's history before its segments)."""
        return sorted(n for n in os.listdir(self.ready_dir) if not n.startswith("."))

    def path(self, name: str) -> Path:
        """The path of a ready file. Raise ArchiverRefused when it is not a private regular file of ours."""
        path = self.ready_dir / name
        self._check_private(path, folder=False)
        return path

    def remove(self, name: str) -> None:
        """Forget a ready file: call only once the repository holds it."""
        os.unlink(self.ready_dir / name)

    def partial(self) -> str | None:
        """The segment pg_receivewal was receiving (incoming/<name>.partial), if any."""
        found = sorted(n[:-len(PARTIAL)] for n in os.listdir(self.incoming)
                       if n.endswith(PARTIAL) and SEGMENT.match(n[:-len(PARTIAL)]))
        return found[-1] if found else None

    def marker(self) -> str | None:
        found = sorted(n for n in os.listdir(self.incoming) if SEGMENT.match(n))
        return found[-1] if found else None

    def set_aside_partial(self) -> str | None:
        """Move the partial segment into ready/ as <name>.partial (archived under that name, as
        PostgreSQL names a partial segment it archives): the server no longer keeps the rest."""
        name = self.partial()
        if name:
            os.replace(self.incoming / f"{name}{PARTIAL}", self.ready_dir / f"{name}{PARTIAL}")
            _fsync_folder(self.ready_dir)
            _fsync_folder(self.incoming)
            logger().warning("set %s%s aside for the repository: the server no longer keeps that segment", name, PARTIAL)
        return name

    def drop_marker(self) -> None:
        for name in os.listdir(self.incoming):
            if SEGMENT.match(name):
                os.unlink(self.incoming / name)

    def kept(self) -> list[str]:
        """Every WAL file name in the spool, finished or partial."""
        return self.ready() + [n for n in os.listdir(self.incoming) if SEGMENT.match(n)]
