"""What a restore may overwrite, decided before anything is fetched: the confirmation that names an
existing target, the folder `files_to` may extract into, and whether two database blocks are the
same database. Pure; flows/restore.py gathers the facts (does the database exist, what is at the
folder) and acts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

# Names under which a client reaches this machine's server: the same database whichever is written.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class RestoreRefused(RuntimeError):
    """The restore would overwrite data without the confirmation that names it."""


def server_identity(hosts: str, ports: str, database: str) -> tuple:
    """Given a block's host list, port list and database name, return what identifies that database:
    host names compared without case, every name of this machine as one."""
    return (tuple("local" if h in LOCAL_HOSTS else h.lower() for h in hosts.split(",")), ports, database)


def check_confirmation(database: str, described: str, confirm: str | None, same_as_source: bool,
                       exists: Callable[[], bool]) -> None:
    """Raise RestoreRefused unless restoring cannot overwrite data, or `confirm` names `database`.

    `same_as_source`: the target is the database the backup came from. `exists` asks the target's
    server whether the database exists; it is asked only when nothing else decides (a confirmed
    restore never needs the answer)."""
    if confirm == database:
        return
    if same_as_source:
        raise RestoreRefused(f"refusing to overwrite the source {described}: pass confirm={database!r} to restore "
                             "over it")
    if exists():
        raise RestoreRefused(f"{described} exists: pass confirm={database!r} to replace it "
                             "(the current one is kept, renamed)")


@dataclass(frozen=True)
class FolderFacts:
    """What is on disk at a folder asked for: the nearest part of its path that exists (the folder
    itself, or the parent it would be made under) and what that is."""

    existing: str        # the folder itself when it exists, else its nearest existing parent
    is_dir: bool
    writable: bool       # this worker may create entries in it (write and search permission)
    empty: bool          # only meaningful when `existing` is the folder itself


def files_to_folder(files_to: str | None) -> str | None:
    """Given the files_to parameter, return the folder asked for, or None when none is.

    Raise RestoreRefused for / (extracting over the host's own files) and ValueError for a relative
    path (a worker's working folder is not fixed)."""
    if files_to is None or files_to == "":
        return None
    if files_to.rstrip("/") == "":
        raise RestoreRefused("files_to=/ would overwrite the host's files: extract into a folder, inspect, then copy")
    if not PurePosixPath(files_to).is_absolute():
        raise ValueError(f"files_to {files_to!r} must be an absolute folder (a worker's working folder is not fixed)")
    return files_to


def check_files_to(files_to: str, folder: str, facts: FolderFacts) -> None:
    """Raise ValueError when `folder` (files_to as given) is, or lies under, something that is not a
    writable folder, or is a folder that is not empty: checked before anything is restored or swapped."""
    if not facts.is_dir:
        raise ValueError(f"files_to {files_to!r}: {facts.existing} is not a folder")
    if not facts.writable:
        raise ValueError(f"files_to {files_to!r}: {facts.existing} is not writable by this worker")
    if facts.existing == folder and not facts.empty:
        raise ValueError(f"files_to {files_to!r} is not empty: give an empty or new folder")
