"""The project's locks (deploy, backup): Prefect's global concurrency limit, plus a lock file on
the host that lets the next run give back a slot whose holder was killed.

Why both: the Prefect limit (strict) is what keeps runs on every host apart and what the
UI shows. But a flow process killed while holding it leaves the slot taken until a
`prefect server` reclaims the lease (minutes), and forever under the ephemeral API, which
keeps leases in the memory of the process that died. The lock file is held with flock(2),
which the kernel drops when its process dies; it names the lease, so the next run on the
host knows the holder is gone and releases exactly that lease.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from uuid import UUID

# Prefect 3.9's own building blocks of `concurrency()`, used directly for the lease id.
from prefect.concurrency._leases import maintain_concurrency_lease
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease, release_concurrency_slots_with_lease

from ubertruck_ops.core.limits import BACKUP_LOCK, BACKUP_LOCK_LEASE_SECONDS, BACKUP_LOCK_WAIT_SECONDS
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.physical import state_dir

@contextmanager
def host_lock(lock_dir: str | os.PathLike, limit: str, wait_seconds: float, lease_seconds: float, holder: str,
              what: str = "deploy or rollback") -> Iterator[None]:
    """Hold `lock_dir`/<limit>.lock and one slot of global concurrency limit `limit` (strict).

    Raise TimeoutError saying who holds it when either is not free within `wait_seconds`.
    """
    log = logger()
    deadline = time.monotonic() + wait_seconds
    Path(lock_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(lock_dir) / f"{limit}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"another {what} is running on this host "
                                       f"({_read(fd).get('holder', 'unknown')}); waited {wait_seconds:.0f} s, "
                                       "refused; nothing was changed") from None
                time.sleep(1)
        stale = _read(fd)
        if stale.get("lease_id"):
            log.warning("the %s lock was left by %s, which ended without releasing it; releasing its slot",
                        limit, stale.get("holder", "a run"))
            try:
                release_concurrency_slots_with_lease(UUID(stale["lease_id"]))
            except Exception as exc:  # noqa: BLE001 - already expired and reclaimed by the server is fine
                log.info("its lease was already gone (%s)", type(exc).__name__)
        try:
            acquired = acquire_concurrency_slots_with_lease(
                [limit], 1, timeout_seconds=max(1.0, deadline - time.monotonic()), strict=True,
                lease_duration=lease_seconds, suppress_warnings=True)
        except TimeoutError:
            raise TimeoutError(f"the global concurrency limit {limit} stayed taken by another {what} "
                               f"(another host?) for {wait_seconds:.0f} s; refused, nothing was changed") from None
        _write(fd, {"lease_id": str(acquired.lease_id), "holder": holder, "pid": os.getpid()})
        try:
            with maintain_concurrency_lease(acquired.lease_id, lease_seconds, raise_on_lease_renewal_failure=True):
                yield
        finally:
            release_concurrency_slots_with_lease(acquired.lease_id)
            _write(fd, {})
    finally:
        os.close(fd)      # also drops the flock


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return json.loads(os.read(fd, 65536) or b"{}")
    except ValueError:
        return {}


def _write(fd: int, data: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(data).encode())
    os.fsync(fd)


def backup_lock(environment: str, holder: str):
    """The lock every backup of `environment` holds (nightly and incremental never overlap)."""
    return host_lock(state_dir(environment), BACKUP_LOCK, BACKUP_LOCK_WAIT_SECONDS, BACKUP_LOCK_LEASE_SECONDS,
                     holder=holder, what="backup")
