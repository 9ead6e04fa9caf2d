"""What every backup does around its own steps: a backup is final once its manifest is written.

Before the manifest, a failure leaves no backup: what it wrote is removed and retention runs
anyway (on a full repository nothing else would ever free space for the next run). Once the
manifest is written the backup is complete and kept, whatever fails after it: the run fails with
FailedAfterBackup and a notice that says the backup is there.
"""

from __future__ import annotations

import secrets
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

from ubertruck_ops.core import notices
from ubertruck_ops.core.manifest import Manifest, backup_folder, new_backup_id, utc_now
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
        op.on_failure(handler=self._failed)

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
                                                            utc_now())
            if catalog.out_of_space(exc):
                raise catalog.repository_full(self.op.repo.description, exc, self.retention) from exc
            raise

    def write_manifest(self, manifest: Manifest) -> None:
        """Write the manifest last: from here on the backup is final."""
        catalog.write_manifest(self.op.repo, manifest)
        self.final = manifest

    def report_unreadable(self) -> None:
        """Tell Slack about backups retention kept because their manifest cannot be read (the log already says)."""
        if self.retention.get("unreadable"):
            self.op.notify(notices.unreadable_manifests(self.op.environment, self.retention["unreadable"]))

    def _failed(self, exc: Exception) -> None:
        self.report_unreadable()
        if self.final is None:
            self.op.failure_notice(exc, notices.after_failed_backup(self.retention) if self.backup_id else [])
            return
        step = self.op.step.current
        self.op.notify(notices.backup_kept_after_failure(self.op.what, self.op.environment, self.final.backup_id,
                                                         step, one_line(exc)))
        raise catalog.FailedAfterBackup(self.final.backup_id, step, exc) from exc
