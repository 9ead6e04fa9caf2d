"""Scratch folders and their owners (/proc and the temporary folder): a drill's scratch folder
records the process that made it, and every drill removes earlier drills' folders whose owner is gone,
stopping a PostgreSQL still running on one. What may be swept is decided in core/scratch.py.

Why: a drill killed by SIGKILL (OOM, a timeout's kill) runs no cleanup; its folder holds a restored
copy of production. Its server dies with it (tasks/scratch_postgres.py), the folder is swept here.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

from ubertruck_ops.core.scratch import (
    KEEP,
    OWNER_FILE,
    SCRATCH_PREFIXES,
    SWEEP,
    leftover_verdict,
    owner_record,
    postmaster_to_stop,
)
from ubertruck_ops.log import logger


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def start_ticks(pid: int) -> int | None:
    """Return when process `pid` started (clock ticks since boot), or None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def record_owner(folder: Path) -> None:
    """Write `folder`'s owner record (this process), 0600, once."""
    text = json.dumps(owner_record(os.getpid(), start_ticks(os.getpid()) or 0, boot_id()))
    fd = os.open(folder / OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def claim_folder(prefix: str) -> Path:
    """Make a private temporary folder named `prefix`... and record this process as its owner."""
    if not prefix.startswith(SCRATCH_PREFIXES):
        raise ValueError(f"a scratch folder's name starts with one of {SCRATCH_PREFIXES}")
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    record_owner(folder)
    return folder


def _read_owner(folder: Path) -> object:
    try:
        fd = os.open(folder / OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return json.loads(os.read(fd, 4096) or b"null")
    except ValueError:
        return None
    finally:
        os.close(fd)


def _our_uids() -> set[int]:
    """Owners a folder of ours may have: us, and under root the server user (scratch_postgres)."""
    from ubertruck_ops.tasks.scratch_postgres import SERVER_USER  # late: scratch_postgres imports this module

    uids = {os.geteuid()}
    if os.geteuid() == 0:
        try:
            uids.add(pwd.getpwnam(SERVER_USER).pw_uid)
        except KeyError:
            pass
    return uids


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _stop_server(folder: Path, owner: object) -> None:
    """Stop the PostgreSQL running on `folder`/data, when one is (checked: a postgres whose working
    folder is that data folder): fast shutdown, then immediate, then SIGKILL."""
    data = folder / "data"
    try:
        fd = os.open(data / "postmaster.pid", os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        text = os.read(fd, 4096).decode(errors="replace")
    finally:
        os.close(fd)
    head = text.split("\n", 1)[0].strip()
    pid_named = int(head) if head.isdigit() else 0
    pid = postmaster_to_stop(text, str(data), os.path.realpath(data), _readlink(f"/proc/{pid_named}/exe"),
                             _readlink(f"/proc/{pid_named}/cwd"))
    if pid is None:
        return
    started = start_ticks(pid)
    logger().warning("stopping PostgreSQL (pid %s) still running on %s, left by a drill (pid %s) that is gone",
                     pid, data, owner.get("pid") if isinstance(owner, dict) else "?")
    for sig, seconds in ((signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if start_ticks(pid) != started:
                return
            time.sleep(0.1)


def sweep_leftovers(parent: str | os.PathLike | None = None) -> list[str]:
    """Remove the scratch folders in `parent` (default: the temporary folder) whose owner is gone,
    stopping a server still running on one; never a folder whose owner lives, nor one without a
    readable owner record. Return the folders removed."""
    log = logger()
    parent = Path(parent or tempfile.gettempdir())
    boot, uids, removed = boot_id(), _our_uids(), []
    try:
        entries = list(os.scandir(parent))
    except OSError as exc:
        log.warning("cannot look for earlier drills' leftovers in %s: %s", parent, exc)
        return removed
    for entry in entries:
        if not entry.name.startswith(SCRATCH_PREFIXES) or not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        try:
            if folder.lstat().st_uid not in uids:
                continue
        except OSError:
            continue
        owner = _read_owner(folder)
        pid = owner.get("pid") if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None
        verdict = leftover_verdict(owner, boot, start_ticks(pid) if pid else None)
        if verdict == KEEP:
            continue
        if verdict != SWEEP:
            log.debug("left %s alone: it has no readable owner record", folder)
            continue
        _stop_server(folder, owner)
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(str(folder))
            log.warning("removed %s, an earlier drill's scratch folder whose owner (pid %s) is gone", folder, pid)
    return removed


def remove_scratch_folder(data_directory: str | os.PathLike) -> None:
    """Remove the scratch folder a drill restored `data_directory` into (its parent), whatever is left in it."""
    shutil.rmtree(Path(data_directory).parent, ignore_errors=True)
