"""Continuous WAL archiving from the backup host (`ubertruck-ops wal-archive`).

pg_receivewal streams WAL over a physical replication slot into a durable spool on this host's
disk (tasks/wal_spool.py); every finished file is encrypted into the repository
(tasks/wal_store.py) and only then leaves the spool. Nothing the repository does ends the
archiver: pushes are retried with backoff for as long as they fail while pg_receivewal keeps
receiving. What to do about the slot, holes, Slack and the dead man's switch is decided in
core/wal_archiving.py; this module acts on it.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.core.wal_archiving import (
    FIRST_BACKOFF,
    ArchiveHealth,
    SlotState,
    backoff,
    newest_segment,
    plan_resume,
    plan_slot,
)
from ubertruck_ops.core.wal_safety import WAL_SLOT
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import wal_slot
from ubertruck_ops.tasks.execute import CommandFailed
from ubertruck_ops.tasks.repository import Repository, RepositoryError
from ubertruck_ops.tasks.wal_spool import PARTIAL, ArchiverRefused, Spool, spool_path
from ubertruck_ops.tasks.wal_store import PREFIX, WalArchiveError, push_file

HOLDER_GRACE = 5.0        # a slot held by someone else may be our own dead stream's walsender, ending
REFUSED_RETRY = 300.0     # a segment the repository refuses is tried again this often (someone may fix it)


def failure_reason(exc: BaseException) -> str:
    """A short reason for a failed push, for Slack and the switch: no URL, no secret, no path."""
    inner = exc
    while isinstance(inner, RepositoryError) and inner.__cause__ is not None:
        inner = inner.__cause__
    response = getattr(inner, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"S3 answered {status} {response['Error'].get('Code', '')}".strip()
    if isinstance(inner, OSError) and inner.errno:
        return f"{errno.errorcode.get(inner.errno, inner.errno)} ({os.strerror(inner.errno)})"
    if isinstance(inner, CommandFailed):
        return f"{os.path.basename(inner.command.split(' ')[0])} failed"
    return type(inner).__name__


def _say_archived(names: list[str]) -> None:
    if names:
        logger().info("archived %s", names[0] if len(names) == 1 else f"{len(names)} WAL files, {names[0]} to {names[-1]}")


class WalStreamer:
    """pg_receivewal into the spool, the spool into the repository, until stop().

    `environment` names the spool's folder and the notices (tasks.state.state_dir); `spool`
    overrides the folder. `error` holds what ended run() (an ArchiverRefused when another archiver
    holds the slot or the spool, or the spool is not private), None after stop().
    """

    def __init__(self, env: Environment, repo: Repository, slot: str = WAL_SLOT, spool: Path | None = None,
                 poll_seconds: float = 1.0, environment: str | None = None):
        from ubertruck_ops.tasks import postgres

        self.env, self.repo, self.slot, self.poll = env, repo, slot, poll_seconds
        self.environment = environment or "db-" + hashlib.sha256(env.database.describe().encode()).hexdigest()[:10]
        self.spool = Path(spool) if spool else spool_path(self.environment, slot)
        self._spool = Spool(self.spool)
        self.health = ArchiveHealth(self.environment, slot, str(self.spool))
        self.receivewal = postgres.tool("pg_receivewal")
        self.archived = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._started_at = self._confirm_at = 0.0
        self._walsender: int | None = None
        self._stream_wait: float | None = None
        self._stream_retry_at = 0.0
        self._refuse_at: float | None = None
        self._push_wait: float | None = None
        self._push_retry_at = self._refused_retry_at = 0.0
        self._newest: str | None = None          # newest segment archived, or reported lost
        self._listed = False
        self._segment_size = 16 << 20

    def _argv(self) -> list[str]:
        # No --synchronous: pg_receivewal reports a segment flushed (what lets the server recycle it)
        # only once it has finished it, and finishing fsyncs the file and renames it durably (its
        # folder fsynced too) - unless --no-sync, never given. --synchronous would fsync every
        # message of the open segment and report positions inside it, which the server keeps anyway.
        return [self.receivewal, f"--directory={self._spool.incoming}", f"--slot={self.slot}", "--no-password",
                "--no-loop", "--status-interval=5"]

    def run(self) -> None:
        """Archive until stop(); then push what can be pushed and leave the rest in the spool."""
        try:
            self._spool.open(f" (slot {self.slot} of environment {self.environment})")
        except ArchiverRefused as exc:
            self.error = exc
            logger().error("%s", exc)
            return
        try:
            self._send(self.health.started(time.monotonic()))
            while not self._stop.is_set():
                self._step(time.monotonic())
                self._stop.wait(self.poll)
        except ArchiverRefused as exc:
            self.error = exc
            logger().error("%s", exc)
        except BaseException as exc:  # noqa: BLE001 - kept for the caller; the spool keeps every segment
            self.error = exc
            logger().error("WAL archiving stopped: %s: %s", type(exc).__name__, exc)
        finally:
            try:
                self._finish()
            finally:
                self._spool.close()

    def stop(self) -> None:
        self._stop.set()

    def _step(self, now: float) -> None:
        self._keep_receiving(now)
        try:
            self._spool.collect()
        except OSError as exc:      # this host's disk (full, failing): what is there stays, tried again
            logger().warning("could not move finished WAL into %s (%s); trying again", self._spool.ready_dir, exc)
        self._push(now)
        self._send(self.health.tick(time.monotonic(), self.archived, len(self._spool.ready())))

    def _finish(self) -> None:
        from ubertruck_ops.tasks.execute import stop

        stop(self._proc, timeout=10)     # first: it closes what it has; its partial segment stays
        self._proc = None
        try:
            self._spool.collect()
            self._push(time.monotonic(), final=True)
        except Exception as exc:  # noqa: BLE001 - whatever is left stays in the spool
            logger().warning("could not push the spool before stopping (%s); it stays for the next start", exc)
        left = self._spool.ready()
        if left:
            logger().warning("%d WAL file(s) left in the spool %s for the next start (from %s)", len(left),
                             self.spool, left[0])

    # --- receiving -------------------------------------------------------------------------

    def _keep_receiving(self, now: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if not self.health.receiving and now >= self._confirm_at:
                self._confirm_streaming(now)
            return
        if proc is not None:
            self._proc = None
            reason = self._stderr[-1] if self._stderr else f"exit status {proc.returncode}"
            ran = now - self._started_at
            logger().warning("pg_receivewal exited after %.0f s (exit status %s): %s", ran, proc.returncode, reason)
            self._send(self.health.stream_down(now, reason[:200]))
            self._stream_wait = None if ran >= 60 else backoff(self._stream_wait)
            self._stream_retry_at = now + (self._stream_wait or FIRST_BACKOFF)
        if now < self._stream_retry_at:
            return
        try:
            ready = self._prepare(now)
        except ArchiverRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - the server down, restarting, refusing us: keep trying
            self._stream_wait = backoff(self._stream_wait)
            self._stream_retry_at = now + self._stream_wait
            logger().warning("cannot prepare replication slot %s (%s: %s); trying again in %.0f s", self.slot,
                             type(exc).__name__, exc, self._stream_wait)
            self._send(self.health.stream_down(now, f"{type(exc).__name__}: {str(exc)[:150]}"))
            return
        if ready:
            self._spawn(now)

    def _prepare(self, now: float) -> bool:
        """Check the slot and resume plan before pg_receivewal starts; return False to wait a moment.
        Raise ArchiverRefused when another archiver holds the slot."""
        from ubertruck_ops.tasks import postgres

        db = self.env.database
        with postgres.connect(db, autocommit=True) as conn:
            wal = wal_slot.server_wal(conn)
            self._segment_size = wal.segment_size
            self.receivewal = postgres.tool("pg_receivewal", wal.version_num // 10000, db.sslmode)
            slot = wal_slot.read_slot(conn, self.slot, wal)
            plan = plan_slot(slot, self.slot, self._walsender)
            if plan.action in ("refuse", "wait"):
                if plan.action == "refuse":
                    self._refuse_at = self._refuse_at or now + HOLDER_GRACE
                    if now >= self._refuse_at:
                        raise ArchiverRefused(plan.message)
                logger().info("%s; checking again in 1 s", plan.message)
                self._stream_retry_at = now + 1
                return False
            self._refuse_at = None
            if plan.action in ("create", "recreate"):
                if plan.action == "recreate":
                    logger().error("%s", plan.message)
                    wal_slot.drop_slot(conn, self.slot)
                slot = SlotState(exists=True, restart_segment=wal_slot.create_slot(conn, self.slot, wal))
                logger().warning("created replication slot %s: the server keeps WAL from %s until it is archived",
                                 self.slot, slot.restart_segment)
        self._resume(now, slot, wal, plan.message if plan.action != "stream" else "")
        return True

    def _resume(self, now: float, slot: SlotState, wal: wal_slot.ServerWal, why: str) -> None:
        """Set aside what pg_receivewal cannot resume from, and say loudly what the archive lacks."""
        self._spool.collect()
        size = wal.segment_size
        if not self._listed:
            self._list_repository()
        newest = newest_segment([n for n in (self._newest, *self._spool.kept()) if n], size)
        fallback = slot.restart_segment if wal.version_num >= 150000 else wal.current_segment
        partial, marker = self._spool.partial(), self._spool.marker()
        resume = plan_resume(newest, partial, marker, slot.restart_segment, fallback, size, wal.current_segment)
        if resume.ahead:
            logger().warning("the spool's segments (%s) are ahead of the server's current one (%s): the server is "
                             "another cluster than the one they came from (rebuilt or restored); pg_receivewal starts "
                             "at the slot, what the spool holds is still archived", partial or marker,
                             wal.current_segment)
        if resume.set_aside_partial:
            self._spool.set_aside_partial()
        if resume.drop_marker:
            self._spool.drop_marker()
        if resume.hole:
            self._newest = resume.hole.last       # said once
            why = why or (f"replication slot {self.slot} keeps WAL only from {slot.restart_segment} on, past the "
                          "newest segment this archive holds (another archiver streamed from it, or it was recreated)")
            logger().error("THE WAL ARCHIVE HAS A HOLE: %s. %s. No point-in-time restore can cross it: take a new base "
                           "backup now (incremental-backup with force_full=true)", resume.hole.describe(), why)
            self._send(self.health.hole(now, resume.hole, why,
                                        partial if resume.set_aside_partial else None))

    def _list_repository(self) -> None:
        from ubertruck_ops.tasks.wal import archived_files

        try:
            self._note_newest(newest_segment(archived_files(self.repo), self._segment_size))
            self._listed = True
        except Exception as exc:  # noqa: BLE001 - a hole before what the spool holds then goes unnoticed here
            logger().warning("could not list the WAL archive (%s: %s); a hole before the spool's segments would be "
                             "noticed only by the backups' gap check", type(exc).__name__, exc)

    def _spawn(self, now: float) -> None:
        from ubertruck_ops.tasks.execute import spawn

        db = self.env.database
        self._stderr.clear()
        self._proc = spawn("pg_receivewal", self._argv(), env=db.libpq_env(), die_with_parent=True,
                           secrets=[db.password.get_secret_value()] if db.password else [],
                           on_stderr_line=self._stderr_line)
        self._started_at, self._confirm_at = now, now + 1

    def _stderr_line(self, line: str) -> None:
        self._stderr.append(line.strip())
        logger().warning("%s", line.strip())

    def _confirm_streaming(self, now: float) -> None:
        """pg_receivewal runs: once the slot shows a walsender, it receives (and that pid is ours)."""
        from ubertruck_ops.tasks import postgres

        self._confirm_at = now + 2
        try:
            with postgres.connect(self.env.database, autocommit=True) as conn:
                slot = wal_slot.read_slot(conn, self.slot, wal_slot.server_wal(conn))
        except Exception as exc:  # noqa: BLE001 - asked again in a moment
            logger().info("could not read replication slot %s (%s)", self.slot, exc)
            return
        if slot.active_pid is not None:
            self._walsender, self._stream_wait = slot.active_pid, None
            logger().info("receiving WAL over slot %s (walsender pid %s)", self.slot, slot.active_pid)
            self._send(self.health.stream_up(now))

    # --- pushing ---------------------------------------------------------------------------

    def _push(self, now: float, final: bool = False) -> None:
        """Push the spool's finished files, oldest first, stopping at the first that fails (tried
        again after a backoff; `final`: now, once)."""
        if not final and now < self._push_retry_at:
            return
        retry_refused = final or now >= self._refused_retry_at
        if retry_refused:
            self._refused_retry_at = now + REFUSED_RETRY
        names, pushed = self._spool.ready(), []
        for index, name in enumerate(names):
            if name in self.health.refused and not retry_refused:
                continue
            try:
                push_file(self.env.encryption, str(self._spool.path(name)), self.repo)
            except ArchiverRefused:
                raise
            except WalArchiveError as exc:
                logger().error("WAL file %s cannot be archived: %s. It stays in %s (never deleted) and is tried again "
                               "every %.0f min; the others go on", name, exc, self._spool.ready_dir, REFUSED_RETRY / 60)
                self._send(self.health.push_refused(now, name, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - the repository failing, in whatever way: retried
                waiting = len(names) - index
                self._push_wait = backoff(self._push_wait)
                self._push_retry_at = time.monotonic() + self._push_wait
                logger().warning("could not archive WAL file %s (%s: %s); %d file(s) wait in the spool, next attempt "
                                 "in %.0f s", name, type(exc).__name__, exc, waiting, self._push_wait)
                self._send(self.health.push_failed(now, failure_reason(exc), waiting))
                _say_archived(pushed)
                return
            self._spool.remove(name)
            self.archived += 1
            self._note_newest(name)
            self.health.pushed(name)
            pushed.append(name)
        _say_archived(pushed)
        self._push_wait = None
        self._send(self.health.drained(time.monotonic()))

    def _note_newest(self, name: str | None) -> None:
        self._newest = newest_segment([n for n in (self._newest, name) if n], self._segment_size)

    def _send(self, signals: list[tuple]) -> None:
        from ubertruck_ops.tasks.notify import notify, ping_check

        for signal in signals:
            if signal[0] == "notice":
                notify.fn(self.env.slack, signal[1])
            else:
                ping_check(self.env.slack.wal_archive_ping_url, signal[1], signal[2])

    def remove_spool(self) -> None:
        """Kept for old callers: the spool is never removed while it holds a finished segment, and
        otherwise kept for the next start (it is where pg_receivewal resumes). Does nothing."""
        try:
            left = self._spool.ready()
        except FileNotFoundError:
            return
        if left:
            logger().warning("the WAL spool %s keeps %d file(s) not yet archived", self.spool, len(left))


__all__ = ["ArchiverRefused", "PARTIAL", "PREFIX", "WalStreamer", "failure_reason"]
