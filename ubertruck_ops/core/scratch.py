"""Which scratch folders a drill may sweep: earlier drills' leftovers (a restored copy of production,
perhaps a server still running on it) whose owner is gone. Pure; tasks/scratch_postgres.py reads
/proc and the folders and acts.

A scratch folder records its owner when it is made: the pid, the pid's start time (clock ticks since
boot, from /proc/<pid>/stat) and the boot id. The owner is alive only while that pid exists with that
start time in this boot: a pid reused by another process does not keep a leftover alive.
"""

from __future__ import annotations

from pathlib import PurePosixPath

OWNER_FILE = "owner.json"
SCRATCH_PREFIXES = ("ubertruck-pg-", "ubertruck-restore-")

SWEEP = "sweep"            # its owner is gone: stop its server (if one runs there) and remove it
KEEP = "keep"              # its owner lives: never touched
UNKNOWN = "unknown"        # no readable owner record (being made right now, or an older release's): left alone


def owner_record(pid: int, start_ticks: int, boot_id: str) -> dict:
    """The record a scratch folder keeps of the process that made it."""
    return {"pid": pid, "start": start_ticks, "boot": boot_id}


def leftover_verdict(record: object, boot_id: str, start_of_pid: int | None) -> str:
    """Given a folder's owner record (as read; anything), this boot's id and the current start time of
    the recorded pid (None: no such process), return SWEEP, KEEP or UNKNOWN."""
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int) \
            or not isinstance(record.get("start"), int) or not isinstance(record.get("boot"), str):
        return UNKNOWN
    if record["boot"] != boot_id:
        return SWEEP                  # made before the last reboot: its owner is gone
    if start_of_pid is not None and start_of_pid == record["start"]:
        return KEEP
    return SWEEP


def postmaster_to_stop(pid_file: str | None, data_dir: str, resolved_data_dir: str, exe: str | None,
                       cwd: str | None) -> int | None:
    """Given the text of a leftover's `postmaster.pid` (None: none), its data folder (as made and
    resolved), and for the pid named there the program it runs and its working folder (None: no such
    process, or not readable), return the pid to stop only when it is a PostgreSQL server of that
    very data folder (a postmaster works in its data folder); else None."""
    if not pid_file:
        return None
    lines = pid_file.splitlines()
    try:
        pid = int(lines[0].strip())
    except (IndexError, ValueError):
        return None
    if pid <= 1 or len(lines) < 2 or lines[1].strip() not in (data_dir, resolved_data_dir):
        return None
    if exe is None or cwd is None:
        return None
    name = PurePosixPath(exe.removesuffix(" (deleted)")).name
    if name not in ("postgres", "postmaster") or cwd != resolved_data_dir:
        return None
    return pid
