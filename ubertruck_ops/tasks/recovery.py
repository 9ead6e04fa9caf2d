"""Recovery points of a base-and-WAL chain, in the repository: wait for a closed WAL segment to be
archived, check every segment since the base is there and intact, record the point.

A point is recorded in its chain's base folder, `<base folder>/recovery-points/<time>.json`, so
retention removes it with the base. It names the base, the point's time and LSN, and the last
segment checked: the next run checks only what came after it (archived WAL never changes; a
damaged file later is found by the physical drill and any restore, which verify what they fetch).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.core.manifest import backup_folder, iso
from ubertruck_ops.core.physical import WalGap, parse_segment, segment_name
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import wal
from ubertruck_ops.tasks.repository import Repository
from ubertruck_ops.tasks.wal_store import read_sidecar, wal_keys

POINTS = "recovery-points"


class WalNotArchived(TimeoutError):
    """A closed WAL segment did not reach the repository in time: archiving is down or behind."""


@task(name="wait-for-wal-archive", cache_policy=NO_CACHE)
def wait_until_archived(repo: Repository, segment: str, timeout: float, poll: float = 1.0) -> float:
    """Wait until `segment` is archived in `repo` (its sidecar written); return the seconds waited.
    Raise WalNotArchived after `timeout` seconds."""
    started = time.monotonic()
    next_log = started + 30
    while True:
        # Absent: not archived yet. A repository that cannot be read is raised, not waited out.
        if read_sidecar(repo, wal_keys(segment)[1]) is not None:
            return time.monotonic() - started
        now = time.monotonic()
        if now - started >= timeout:
            raise WalNotArchived(f"WAL segment {segment} was closed but not archived within {timeout:.0f} s: is "
                                 "`ubertruck-ops wal-archive` (or archive_command with `ubertruck-ops wal-push %p`) "
                                 "running for this server?")
        if now >= next_log:
            logger().info("waiting for WAL segment %s to be archived (%.0f s so far)", segment, now - started)
            next_log = now + 30
        time.sleep(poll)


@task(name="check-wal-archive", cache_policy=NO_CACHE)
def check_segments(repo: Repository, timeline: int, first: int, last: int, segment_size: int,
                   verify_from: int | None = None) -> dict:
    """Check that every segment of `timeline` from number `first` to `last` is archived, and that those
    from `verify_from` (default `first`) have stored bytes matching the checksum and size their sidecar
    recorded. Return how many segments and bytes were verified. Raise WalGap naming the missing
    segments, ValueError naming a damaged one."""
    archived = wal.archived_files(repo)
    present = {parse_segment(n, segment_size)[1] for n in archived
               if parse_segment(n, segment_size) and parse_segment(n, segment_size)[0] == timeline}
    missing = [segment_name(timeline, s, segment_size) for s in range(first, last + 1) if s not in present]
    if missing:
        raise WalGap(f"WAL missing from the archive between the base and the recovery point: "
                     f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} ({len(missing)} segment(s)); "
                     "point-in-time restore cannot cross it: take a new base backup (force_full=true)")
    checked, verify_from = 0, max(first, first if verify_from is None else verify_from)
    for number in range(verify_from, last + 1):
        name = segment_name(timeline, number, segment_size)
        data_key, sidecar_key = wal_keys(name)
        meta = read_sidecar(repo, sidecar_key)
        if meta is None:
            raise WalGap(f"WAL segment {name} lost its sidecar while it was checked")
        digest, size = hashlib.sha256(), 0
        for chunk in repo.read_chunks(data_key):
            digest.update(chunk)
            size += len(chunk)
        if digest.hexdigest() != meta["stored_sha256"] or size != meta["stored_size"]:
            raise ValueError(f"archived WAL segment {name} is damaged: its stored bytes do not match the checksum "
                             "recorded when it was archived; take a new base backup (force_full=true)")
        checked += size
    return {"segments": max(0, last - verify_from + 1), "bytes": checked}


def latest_point(repo: Repository, base_id: str) -> dict | None:
    """Return the newest recovery point recorded on the chain of `base_id`, or None."""
    listed = sorted(item.key for item in repo.list(f"{backup_folder(base_id)}/{POINTS}/")
                    if item.key.endswith(".json"))
    for key in reversed(listed):
        try:
            return json.loads(repo.get_bytes(key))
        except (ValueError, OSError) as exc:
            logger().warning("recovery point %s is unreadable (%s); checking the WAL since the base again", key, exc)
            return None
    return None


@task(name="record-recovery-point", cache_policy=NO_CACHE)
def record_point(repo: Repository, base_id: str, chain_end: str, point: dict, checked_through: str,
                 checked: dict, recorded_at: datetime) -> dict:
    """Write the recovery point into the chain's base folder; return what was written (no secret)."""
    # Full precision: a restore to this time must include everything committed before it.
    moment = point["time"].astimezone(UTC).isoformat()
    record = {"format": 1, "base": base_id, "chain_end": chain_end, "time": moment, "lsn": point["lsn"],
              "timeline": point["timeline"], "segment": point["segment"], "checked_through": checked_through,
              "segments_checked": checked["segments"], "bytes_checked": checked["bytes"],
              "recorded_at": iso(recorded_at)}
    stamp = recorded_at.strftime("%Y%m%dT%H%M%S%fZ")
    repo.put_bytes(f"{backup_folder(base_id)}/{POINTS}/{stamp}.json", json.dumps(record, indent=2).encode())
    return record
