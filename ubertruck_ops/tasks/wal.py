"""The WAL archive in the repository: push one segment (PostgreSQL's archive_command), list,
fetch for a point-in-time restore, retention.

The layout and the push itself live in tasks/wal_store.py (no Prefect there: `wal-push` runs one
process per segment): wal/<file>.zst.gpg plus wal/<file>.json, the sidecar written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.core.physical import wal_to_delete
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.crypto import GpgSession, zstd_decompress_stage
from ubertruck_ops.tasks.stream import load_stream
from ubertruck_ops.tasks.repository import Repository, is_transient
from ubertruck_ops.tasks.retrying import network_retries
from ubertruck_ops.tasks.wal_store import PREFIX, WalArchiveError, push_file, wal_keys as _keys

__all__ = ["PREFIX", "WalArchiveError", "WalStreamer", "apply_wal_retention", "archived_files", "fetch_segments",
           "push_segment"]


def push_segment(env: Environment, path: str, repo: Repository) -> str:
    """Archive the WAL file at `path` with the environment's key (wal_store.push_file): the same
    content again succeeds, different content under an archived name is refused."""
    return push_file(env.encryption, path, repo)


def archived_files(repo: Repository) -> dict[str, datetime]:
    """Return every archived WAL file name with the time its sidecar was written."""
    found = {}
    for item in repo.list(PREFIX):
        name = item.key[len(PREFIX):]
        if name.endswith(".json"):
            found[name[:-len(".json")]] = item.modified
    return found


@task(name="fetch-wal", cache_policy=NO_CACHE, **network_retries(is_transient))
def fetch_segments(repo: Repository, names: list[str], gpg: GpgSession, destination: Path) -> int:
    """Decrypt the named WAL files into `destination` (the restore's private folder), checking both
    checksums. Return the bytes fetched."""
    destination.mkdir(parents=True, exist_ok=True, mode=0o700)
    destination.chmod(0o700)
    total = 0
    for name in names:
        data_key, meta_key = _keys(name)
        meta = json.loads(repo.get_bytes(meta_key))
        plain = load_stream(repo, data_key, meta["stored_sha256"], [gpg.decrypt_stage(), zstd_decompress_stage()],
                            capture=True, timeout=600)
        if hashlib.sha256(plain).hexdigest() != meta["plain_sha256"]:
            raise WalArchiveError(f"WAL file {name} decrypts to different bytes than were archived")
        _write_private(destination / name, plain)
        total += len(plain)
    return total


def _write_private(path: Path, data: bytes) -> None:
    """Plaintext WAL is the database's content: 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(fd, 0o600)
        handle.write(data)


@task(name="wal-retention", cache_policy=NO_CACHE)
def apply_wal_retention(repo: Repository, protected: list[tuple[int, int]], now: datetime, keep: timedelta,
                        segment_size: int) -> int:
    """Delete archived WAL older than `keep` that no kept backup needs; return how many files went."""
    doomed = wal_to_delete(archived_files(repo), protected, now, keep, segment_size)
    keys = [k for name in doomed for k in reversed(_keys(name))]   # sidecar first
    if keys:
        repo.delete(keys)
        logger().info("WAL retention: %d file(s) deleted", len(doomed))
    return len(doomed)


class WalStreamer:
    """Continuous WAL archiving from the backup host: pg_receivewal streams WAL over a replication
    slot into a private spool in RAM (/dev/shm), and every completed file is encrypted into the
    repository and deleted from the spool at once.

    Chosen over archive_command because it needs nothing installed or configured on the
    database host beyond the REPLICATION privilege the incremental backups already need, and
    the slot makes the server keep WAL while the archiver is briefly down (bound it with
    max_slot_wal_keep_size). See the README.
    """

    def __init__(self, env: Environment, repo: Repository, slot: str = "ubertruck_wal", spool: Path | None = None,
                 poll_seconds: float = 1.0):
        from ubertruck_ops.tasks import postgres

        self.env, self.repo, self.slot, self.poll = env, repo, slot, poll_seconds
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        self.spool = spool or Path(tempfile.mkdtemp(prefix="ubertruck-wal-", dir=base))
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spool.chmod(0o700)
        self.receivewal = postgres.tool("pg_receivewal")
        self.archived = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self.error: BaseException | None = None

    def _argv(self) -> list[str]:
        return [self.receivewal, f"--directory={self.spool}", f"--slot={self.slot}", "--no-password",
                "--no-loop", "--status-interval=5"]

    def _ensure_slot(self) -> None:
        from ubertruck_ops.tasks import postgres

        with postgres.connect(self.env.database, autocommit=True) as conn:
            # The pg_receivewal for this server's major and sslmode (TLS needs a client built with it).
            self.receivewal = postgres.tool("pg_receivewal", postgres.server_version_num(conn) // 10000,
                                            self.env.database.sslmode)
            exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)).fetchone()
            if not exists:
                conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (self.slot,))
                logger().info("created replication slot %s (the server keeps WAL until it is archived)", self.slot)

    def drain(self) -> int:
        """Archive and remove every completed file in the spool; return how many."""
        done = 0
        for path in sorted(self.spool.iterdir()):
            if path.name.endswith(".partial") or path.name.startswith("."):
                continue
            push_segment(self.env, str(path), self.repo)
            path.unlink()
            done += 1
        self.archived += done
        return done

    def run(self) -> None:
        """Stream and archive until stop(); restart pg_receivewal when it exits (server restart...)."""
        from ubertruck_ops.tasks.execute import spawn

        try:
            self._ensure_slot()
            while not self._stop.is_set():
                if self._proc is None or self._proc.poll() is not None:
                    if self._proc is not None:
                        logger().warning("pg_receivewal exited (%s); restarting", self._proc.returncode)
                        time.sleep(self.poll)
                    db = self.env.database
                    self._proc = spawn("pg_receivewal", self._argv(), env=db.libpq_env(), die_with_parent=True,
                                       secrets=[db.password.get_secret_value()] if db.password else [])
                self.drain()
                self._stop.wait(self.poll)
            self.drain()
        except BaseException as exc:  # noqa: BLE001 - kept for the caller; the thread must not die silently
            self.error = exc
            logger().error("WAL archiving stopped: %s", exc)
        finally:
            self._terminate()

    def _terminate(self) -> None:
        from ubertruck_ops.tasks.execute import stop

        stop(self._proc, timeout=10)

    def stop(self) -> None:
        self._stop.set()

    def remove_spool(self) -> None:
        shutil.rmtree(self.spool, ignore_errors=True)

