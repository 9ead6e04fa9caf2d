"""The project's locks (deploy, backup): Prefect's global concurrency limit, plus a lock file on
the host that lets the next run give back a slot whose holder was killed.

Why both: the Prefect limit (strict) is what keeps runs on every host apart and what the UI
shows. But a flow process killed while holding it leaves the slot taken: until a `prefect server`
reclaims the lease (minutes), and for good when the lease lived in an API process that is gone
(Prefect's ephemeral API, a restarted server keeping leases in memory). The lock file is held with
flock(2), which the kernel drops when its process dies; it names the lease, the API that granted
it and until when it was renewed, so the next run on the host knows the holder is gone and gives
back the slot that holder took, when the API it talks to counted it (core/locks.py decides):

- the API still knows the lease (a server; or one of our servers, which keep leases on disk under
  PREFECT_HOME): release that lease;
- this same API granted it, lost it although it had not expired (a server keeping leases in memory
  restarted) and still counts it: the holder's one slot is given back by name;
- otherwise nothing: a lease granted by a private API (gone with its run) or by another API never
  took a slot on this one, and giving one back by name would free a live run's slot (another host's);
  an expired lease is given back by the server's lease reaper.

Only Prefect's public client API is used (increment/renew/release with lease, decrement).
"""

from __future__ import annotations

import _thread
import contextvars
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from ubertruck_ops.core.limits import (
    BACKUP_LOCK,
    BACKUP_LOCK_LEASE_SECONDS,
    BACKUP_LOCK_WAIT_SECONDS,
    DEPLOY_LOCK,
    DEPLOY_LOCK_LEASE_SECONDS,
    LOCK_WAIT_LOG_SECONDS,
)
from ubertruck_ops.core.locks import NOTHING, RELEASE_LEASE, lease_lost, stale_lease_action
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.api_identity import PRIVATE_API_VARIABLE
from ubertruck_ops.tasks.state import state_dir


class LockError(RuntimeError):
    """A lock could not be taken for a reason other than another holder (a missing limit)."""


@contextmanager
def host_lock(lock_dir: str | os.PathLike, limit: str, wait_seconds: float, lease_seconds: float, holder: str,
              what: str = "deploy or rollback") -> Iterator[None]:
    """Hold `lock_dir`/<limit>.lock and one slot of global concurrency limit `limit` (strict).

    While waiting, log who holds it about every LOCK_WAIT_LOG_SECONDS. Raise TimeoutError saying who
    holds it when either is not free within `wait_seconds`.
    """
    log = logger()
    started = time.monotonic()
    deadline = started + wait_seconds
    fd = _open_lock_file(lock_dir, limit)
    try:
        next_report = _take_flock(fd, limit, started, deadline, what)
        with get_client(sync_client=True) as client:
            api = str(client.api_url).rstrip("/")
            stale = _read(fd)
            if stale.get("lease_id"):
                log.warning("the %s lock was left by %s, which ended without releasing it; giving back its slot",
                            limit, _describe(stale))
                _give_back(client, limit, stale, api)
            lease_id = _acquire(client, limit, lease_seconds, started, deadline, what, next_report)
            log.info("took the %s lock after waiting %.1f s", limit, time.monotonic() - started)
            record = {"lease_id": str(lease_id), "holder": holder, "pid": os.getpid(), "api": api,
                      "private_api": os.environ.get(PRIVATE_API_VARIABLE, "").rstrip("/") == api,
                      "since": time.time(), "until": time.time() + lease_seconds}
            _write(fd, record)
            renewal = _Renewal(fd, record, lease_seconds, limit)
            try:
                yield
            finally:
                renewal.stop()
                _write(fd, {**record, "releasing": True})
                try:
                    client.release_concurrency_slots_with_lease(lease_id)
                finally:
                    _write(fd, {})
    finally:
        os.close(fd)      # also drops the flock


@contextmanager
def flock_only(lock_dir: str | os.PathLike, name: str, wait_seconds: float, holder: str,
               what: str = "deploy or rollback") -> Iterator[None]:
    """Hold `lock_dir`/<name>.lock (flock) without a global concurrency slot: one app host's part of
    a rolling deploy, whose parent run holds the environment's slot. Same waiting and refusal as
    host_lock; the kernel drops it when the process dies."""
    started = time.monotonic()
    fd = _open_lock_file(lock_dir, name)
    try:
        _take_flock(fd, name, started, started + wait_seconds, what)
        _write(fd, {"holder": holder, "pid": os.getpid(), "since": time.time()})
        try:
            yield
        finally:
            _write(fd, {})
    finally:
        os.close(fd)


def _open_lock_file(lock_dir: str | os.PathLike, name: str) -> int:
    Path(lock_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(Path(lock_dir) / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)


def _take_flock(fd: int, name: str, started: float, deadline: float, what: str) -> float:
    """Wait for the flock on `fd` until `deadline`, logging who holds it; return when the next wait
    report is due. Raise TimeoutError saying who holds it."""
    log = logger()
    next_report = started + LOCK_WAIT_LOG_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return next_report
        except BlockingIOError:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"another {what} is running on this host ({_describe(_read(fd))}); "
                                   f"waited {deadline - started:.0f} s, refused; nothing was changed") from None
            if now >= next_report:
                log.info("waiting for the %s lock: held on this host by %s; waited %.0f s of %.0f s",
                         name, _describe(_read(fd)), now - started, deadline - started)
                next_report = now + LOCK_WAIT_LOG_SECONDS
            time.sleep(min(1.0, max(0.05, deadline - now)))


def _acquire(client, limit: str, lease_seconds: float, started: float, deadline: float, what: str,
             next_report: float) -> UUID:
    """Take one slot of `limit` with a lease; wait (logging) while it is taken. Return the lease id."""
    log = logger()
    holder = _lease_holder()
    while True:
        try:
            reply = client.increment_concurrency_slots_with_lease([limit], 1, "concurrency", lease_seconds,
                                                                  holder=holder)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:
                raise
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"the global concurrency limit {limit} stayed taken by another {what} "
                                   f"(another host?) for {deadline - started:.0f} s; refused, nothing was "
                                   "changed") from None
            if now >= next_report:
                log.info("waiting for the global concurrency limit %s: %s; waited %.0f s of %.0f s",
                         limit, _limit_state(client, limit), now - started, deadline - started)
                next_report = now + LOCK_WAIT_LOG_SECONDS
            try:
                pause = float(exc.response.headers.get("Retry-After", 1))
            except ValueError:
                pause = 1.0
            time.sleep(min(max(pause, 0.2), 5.0, max(0.05, deadline - now)))
            continue
        body = reply.json()
        if not body.get("limits"):
            raise LockError(f"the global concurrency limit {limit} does not exist: run `ubertruck-ops blocks init` "
                            "(it creates the limits)")
        return UUID(body["lease_id"])


def _give_back(client, limit: str, stale: dict, api: str) -> None:
    """Give back the one slot a dead holder on this host took, when this API counted it
    (core/locks.stale_lease_action decides; see the module's docstring)."""
    log = logger()
    lease_id = UUID(stale["lease_id"])
    try:
        client.renew_concurrency_lease(lease_id, 60)      # 204: this API knows the lease
        known = True
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code not in (404, 410):
            raise
        known = False
    taken = None
    if not known:
        try:
            taken = client.read_global_concurrency_limit_by_name(limit).active_slots
        except ObjectNotFound:
            taken = None
    decision = stale_lease_action(stale, api, known, taken)
    if decision.action == RELEASE_LEASE:
        client.release_concurrency_slots_with_lease(lease_id)
        log.info("released its lease %s", lease_id)
        return
    if decision.action == NOTHING:
        log.info("%s", decision.why)
        return
    client.release_concurrency_slots([limit], 1, max(1.0, time.time() - float(stale.get("since") or time.time())))
    log.warning("%s (%d -> %d taken)", decision.why, taken, taken - 1)


def _limit_state(client, limit: str) -> str:
    try:
        found = client.read_global_concurrency_limit_by_name(limit)
    except Exception as exc:  # noqa: BLE001 - only for the log line
        return f"could not read it ({type(exc).__name__})"
    return f"{found.active_slots} of {found.limit} slot(s) taken by a run elsewhere (another host?)"


def _lease_holder():
    """The flow run taking the lock, for the UI's holders list (None outside a run)."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None
    return ConcurrencyLeaseHolder(type="flow_run", id=context.flow_run.id)


class _Renewal:
    """Renews the lease in the background (every third of its duration) and records until when in
    the lock file. A lease the server no longer knows means the slot is no longer ours: the holder
    (when it is the main thread) is interrupted rather than overlapping another run."""

    def __init__(self, fd: int, record: dict, lease_seconds: float, limit: str):
        self.fd, self.record, self.lease_seconds, self.limit = fd, record, lease_seconds, limit
        self.log = logger()
        self.main = threading.current_thread() is threading.main_thread()
        self._stop = threading.Event()
        # The thread runs in a copy of this context: Prefect's settings (which API granted the lease,
        # its auth) live in context variables, and a bare thread would talk to another API.
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,), daemon=True,
                                       name=f"lease-renewal-{limit}")
        self.thread.start()

    def _loop(self) -> None:
        lease_id = UUID(self.record["lease_id"])
        failures = 0
        with get_client(sync_client=True) as client:
            while not self._stop.wait(self.lease_seconds / 3 if failures == 0 else 5):
                try:
                    client.renew_concurrency_lease(lease_id, self.lease_seconds)
                except Exception as exc:  # noqa: BLE001 - judged below
                    failures += 1
                    status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
                    if lease_lost(status, self.record["until"]):
                        self.log.error("the %s lease is gone (%s): another run may take the slot; stopping",
                                       self.limit, type(exc).__name__)
                        if self.main:
                            _thread.interrupt_main()
                        return
                    self.log.warning("renewing the %s lease failed (%s); retrying", self.limit, exc)
                    continue
                failures = 0
                self.record["until"] = time.time() + self.lease_seconds
                if not self._stop.is_set():
                    _write(self.fd, self.record)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)


def _describe(record: dict) -> str:
    if not record.get("holder"):
        return "a run that recorded nothing"
    since = record.get("since")
    started = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    return f"{record['holder']} (pid {record.get('pid', '?')}{started})"


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        data = json.loads(os.read(fd, 65536) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write(fd: int, data: dict) -> None:
    """Overwrite the record in place, then cut it to length (a reader never sees an empty file
    between two records)."""
    text = json.dumps(data).encode()
    os.pwrite(fd, text, 0)
    os.ftruncate(fd, len(text))
    os.fsync(fd)


def backup_lock(environment: str, holder: str):
    """The lock every backup of `environment` holds (nightly and incremental never overlap)."""
    return host_lock(state_dir(environment), BACKUP_LOCK, BACKUP_LOCK_WAIT_SECONDS, BACKUP_LOCK_LEASE_SECONDS,
                     holder=holder, what="backup")


def rolling_lock(environment: str, wait_seconds: float, holder: str):
    """The lock a rolling deploy or rollback of `environment` holds for the whole roll: the
    environment's deploy slot (no other deploy or rollback, single-host or rolling, runs meanwhile),
    with its lock file in the state folder of the host that orchestrates."""
    return host_lock(state_dir(environment), DEPLOY_LOCK, wait_seconds, DEPLOY_LOCK_LEASE_SECONDS, holder=holder)
