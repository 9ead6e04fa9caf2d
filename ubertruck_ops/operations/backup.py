"""What every backup does around its own steps: a backup is final once its manifest is written.

Its clock: a backup's times are the database server's (read in the backup's own connection),
and retention deletes by age only while this host's clock agrees with the server's and the
repository's (core/clock.py); otherwise it holds and says so in the log, the notice and the result.

Before the manifest, a failure leaves no backup: what it wrote is removed and retention runs
anyway (on a full repository nothing else would ever free space for the next run). Once the
manifest is written the backup is complete and kept, whatever fails after it: the run fails with
FailedAfterBackup and a notice that says the backup is there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from ubertruck_ops.core import notices
from ubertruck_ops.core.clock import ClockReading, disagreement, server_offset
from ubertruck_ops.core.manifest import MANIFEST_NAME, Manifest, backup_folder, new_backup_id, utc_now
from ubertruck_ops.core.text import one_line
from ubertruck_ops.operations.frame import Operation
from ubertruck_ops.tasks import catalog
from ubertruck_ops.tasks.locks import backup_lock


class BackupAttempt:
    """One backup of an operation: its id once named, its manifest once written, what retention did."""

    def __init__(self, op: Operation):
        self.op = op
        self.backup_id: str | None = None
        self.final: Manifest | None = None
        self.retention: dict = {}
        self.readings: list[ClockReading] = []     # other clocks read this run (core/clock.py)
        self.clock_warnings: list[str] = []
        self._reporting = op.failure_says(handler=self._failed)

    def __enter__(self) -> BackupAttempt:
        """Within the attempt a failure reports through _failed: a backup that is final is kept and said
        to be kept; one that is not says what its clean-up did."""
        self._reporting.__enter__()
        return self

    def __exit__(self, *exc_info) -> bool | None:
        return self._reporting.__exit__(*exc_info)

    def read_clock(self, reading: ClockReading | None) -> None:
        """Keep another clock's reading; say at once when this host's clock disagrees with it."""
        if reading is None:
            return
        self.readings.append(reading)
        problem = disagreement([reading])
        if problem:
            dated = " this backup is dated by the server's clock;" if server_offset([reading]) else ""
            line = f"{problem}:{dated} check NTP on this host (timedatectl)"
            self.op.log.warning("%s", line)
            self.clock_warnings.append(line)

    def now(self) -> datetime:
        """The time to record: the database server's once its clock was read (a manifest is never dated
        in the future of the server's clock), else this host's."""
        return utc_now() + server_offset(self.readings)

    def warnings(self) -> list[str]:
        """The clock's and retention's warnings for the run's notice, loudest first."""
        found = [self.retention.get("held"), *self.clock_warnings, self.retention.get("clock_warning")]
        return [w for w in found if w]

    def apply_retention(self) -> dict:
        """Apply retention after this backup (core/retention.py, held per core/clock.py); keep and return its report."""
        self.retention = catalog.apply_retention(self.op.repo, self.op.env.repository, self.now(), taken=self.final,
                                                 readings=self.readings)
        return self.retention

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the environment's backup lock (two backups never overlap)."""
        self.op.step("wait for the backup lock")
        with backup_lock(self.op.environment, holder=f"{self.op.what} of {self.op.environment}"):
            yield

    def begin(self, kind: str, started: datetime) -> str:
        """Name a new backup of `kind`; return its folder in the repository."""
        self.backup_id = new_backup_id(started, kind, secrets.token_hex(3))
        return backup_folder(self.backup_id)

    @contextmanager
    def until_manifest(self) -> Iterator[None]:
        """Around everything up to and including write_manifest: a failure inside is not a backup, so
        remove what it wrote and apply retention anyway; a full repository is said to be full."""
        try:
            yield
        except Exception as exc:
            if self.final is not None:
                raise   # the manifest is written: never discard a complete backup
            self.retention = catalog.clean_up_failed_backup(self.op.repo, self.op.env.repository, self.backup_id,
                                                            self.now(), self.readings)
            if catalog.out_of_space(exc):
                raise catalog.repository_full(self.op.repo.description, exc, self.retention) from exc
            raise

    def write_manifest(self, manifest: Manifest) -> None:
        """Write the manifest last: from here on the backup is final. Then read the repository's time for
        it: a second clock besides the database server's."""
        before = utc_now()
        catalog.write_manifest(self.op.repo, manifest)
        self.final = manifest
        key = f"{backup_folder(manifest.backup_id)}/{MANIFEST_NAME}"
        try:
            self.read_clock(catalog.object_clock(self.op.repo, key, before, utc_now()))
        except Exception as exc:  # noqa: BLE001 - the backup is final; a missing reading only makes retention hold
            self.op.log.warning("could not read the repository's time for %s (%s)", key, one_line(exc))

    def report_unreadable(self) -> None:
        """Tell Slack about backups retention kept because their manifest cannot be read (the log already says)."""
        if self.retention.get("unreadable"):
            self.op.notify(notices.unreadable_manifests(self.op.environment, self.retention["unreadable"]))

    def _failed(self, exc: Exception) -> None:
        self.report_unreadable()
        if self.final is None:
            lines = notices.after_failed_backup(self.retention) if self.backup_id else []
            self.op.failure_notice(exc, lines + [w for w in [self.retention.get("held")] if w])
            return
        step = self.op.step.current
        self.op.failure_alert(notices.backup_kept_after_failure(self.op.what, self.op.environment,
                                                                self.final.backup_id, step, one_line(exc)), exc)
        raise catalog.FailedAfterBackup(self.final.backup_id, step, exc) from exc
