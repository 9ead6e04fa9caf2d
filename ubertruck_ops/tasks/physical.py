"""Physical backups of the PostgreSQL cluster: facts, pg_basebackup (full and incremental),
and rebuilding a data directory with pg_combinebackup.

pg_basebackup writes one tar stream to stdout (`-D - -Ft -X fetch`: the WAL needed for
consistency travels inside it, and its backup_manifest is the stream's last member).
The manifest is picked out of the stream in memory on its way to zstd and gpg, since the
next incremental backup needs it.
"""

from __future__ import annotations

import contextvars
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.connection import ClientTools
from ubertruck_ops.core.manifest import StoredObject
from ubertruck_ops.core.names import restore_command
from ubertruck_ops.core.physical import ServerFacts
from ubertruck_ops.tasks import postgres
from ubertruck_ops.tasks.crypto import GpgSession, zstd_compress_stage
from ubertruck_ops.tasks.execute import Stage, run
from ubertruck_ops.tasks.repository import Repository
from ubertruck_ops.tasks.state import state_dir
from ubertruck_ops.tasks.stream import store_stream

DATA_OBJECT = "base.tar.zst.gpg"
BACKUP_MANIFEST_OBJECT = "backup_manifest.zst.gpg"

_MANAGED = [("rds_superuser", "Amazon RDS"), ("cloudsqlsuperuser", "Google Cloud SQL"),
            ("azure_pg_admin", "Azure Database for PostgreSQL")]


def server_facts(conn: psycopg.Connection) -> ServerFacts:
    """Return what decides whether and how a physical backup can run."""
    def show(name: str) -> str | None:
        row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
        return row[0] if row else None

    roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    managed = next((provider for role, provider in _MANAGED if role in roles), None)
    can_replicate = conn.execute(
        "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    identifier = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]
    timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    can_switch = conn.execute("SELECT has_function_privilege('pg_switch_wal()', 'EXECUTE')").fetchone()[0]
    return ServerFacts(version_num=int(show("server_version_num")), summarize_wal=show("summarize_wal") == "on",
                       wal_level=show("wal_level"), can_replicate=bool(can_replicate), managed_by=managed,
                       system_identifier=identifier, timeline=int(timeline),
                       wal_segment_size=int(show("wal_segment_size")),   # in bytes (unit B) since PostgreSQL 11
                       can_switch_wal=bool(can_switch))


class TarMemberCapture:
    """Feeds on a tar stream chunk by chunk and keeps the bytes of one member (ustar headers)."""

    def __init__(self, name: str):
        self.name = name
        self.captured = bytearray()
        self.found = False
        self._header = bytearray()
        self._remaining = 0
        self._padding = 0
        self._capturing = False

    def __call__(self, chunk: bytes) -> None:
        view, index = memoryview(chunk), 0
        while index < len(view):
            if self._remaining:
                take = view[index:index + self._remaining]
                if self._capturing:
                    self.captured += take
                self._remaining -= len(take)
                index += len(take)
            elif self._padding:
                take = min(self._padding, len(view) - index)
                self._padding -= take
                index += take
            else:
                take = view[index:index + 512 - len(self._header)]
                self._header += take
                index += len(take)
                if len(self._header) == 512:
                    self._read_header(bytes(self._header))
                    self._header.clear()

    def _read_header(self, header: bytes) -> None:
        if header == bytes(512):
            return
        name = header[0:100].split(b"\0")[0].decode(errors="replace")
        prefix = header[345:500].split(b"\0")[0].decode(errors="replace")
        size_field = header[124:136]
        size = int.from_bytes(size_field[1:], "big") if size_field[0] & 0x80 else int(size_field.split(b"\0")[0].strip() or b"0", 8)
        full = f"{prefix}/{name}" if prefix else name
        self._capturing = full == self.name
        self.found = self.found or self._capturing
        self._remaining = size
        self._padding = (-size) % 512


def basebackup_stage(db: PostgresDatabase, incremental_manifest: str | None, tools: ClientTools | None = None) -> Stage:
    argv = [tools.path("pg_basebackup") if tools else postgres.tool("pg_basebackup"), "--pgdata=-", "--format=tar", "--wal-method=fetch",
            "--checkpoint=fast", "--no-password", "--label=ubertruck-ops"]
    if incremental_manifest:
        argv.append(f"--incremental={incremental_manifest}")
    return Stage("pg_basebackup", argv, db.libpq_env(), secrets=[db.password.get_secret_value()] if db.password else [])


@contextmanager
def previous_manifest_file(data: bytes) -> Iterator[str]:
    """Yield a private temporary file holding the previous backup's backup_manifest (file names,
    sizes and checksums: no row data), removed afterwards."""
    folder = tempfile.mkdtemp(prefix="ubertruck-manifest-")
    path = os.path.join(folder, "backup_manifest")
    try:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
            handle.write(data)
        yield path
    finally:
        Path(path).unlink(missing_ok=True)
        os.rmdir(folder)


def remember_manifest(environment: str, backup_id: str, data: bytes, keep: int = 3) -> None:
    """Keep a private local copy of a backup's backup_manifest: with public-key encryption this host
    cannot decrypt the stored one, and the next incremental needs it. Only the newest few are kept."""
    folder = state_dir(environment)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{backup_id}.backup_manifest"
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
    for old in sorted(folder.glob("*.backup_manifest"))[:-keep]:
        old.unlink(missing_ok=True)


def recalled_manifest(environment: str, backup_id: str) -> bytes | None:
    path = state_dir(environment) / f"{backup_id}.backup_manifest"
    return path.read_bytes() if path.is_file() else None


@task(name="physical-backup", cache_policy=NO_CACHE)
def take_basebackup(db: PostgresDatabase, gpg: GpgSession, repo: Repository, folder: str,
                    previous_manifest: bytes | None, tools: ClientTools | None = None
                    ) -> tuple[list[StoredObject], dict, bytes]:
    """Stream pg_basebackup (incremental when `previous_manifest` is given; from `tools`, the client
    folder chosen for the server and its sslmode, else the shipped one) through zstd and gpg into
    the repository; store its backup_manifest too. Return the objects, the WAL range it covers and
    the backup_manifest."""
    capture, streamed, data_stored = TarMemberCapture("backup_manifest"), threading.Event(), []

    def captured_manifest() -> Iterator[bytes]:
        streamed.wait()
        if not data_stored:
            raise RuntimeError("the data stream failed, so its backup_manifest is not stored either")
        if not capture.found:
            raise RuntimeError("pg_basebackup's stream held no backup_manifest")
        yield bytes(capture.captured)

    # The manifest's own zstd | gpg starts now, so gpg derives its key while the data streams (0.09 s
    # for gpg alone, measured; a small incremental's step takes ~0.35 s); it gets the manifest once
    # the data is stored.
    with ThreadPoolExecutor(max_workers=1) as pool:
        manifest_stored = pool.submit(contextvars.copy_context().run, store_stream, repo,
                                      f"{folder}/{BACKUP_MANIFEST_OBJECT}",
                                      [zstd_compress_stage(), gpg.encrypt_stage()], feed=captured_manifest())
        try:
            with (previous_manifest_file(previous_manifest) if previous_manifest is not None
                  else nullcontext()) as path:
                data_stored.append(store_stream(repo, f"{folder}/{DATA_OBJECT}",
                                                [zstd_compress_stage(), gpg.encrypt_stage()],
                                                source=[basebackup_stage(db, path, tools)], tap=capture))
        finally:
            streamed.set()  # on failure too: the manifest's pipeline then fails and stores nothing
        stored = manifest_stored.result()
    written = data_stored[0]
    manifest_bytes = bytes(capture.captured)
    ranges = json.loads(manifest_bytes)["WAL-Ranges"]
    wal = {"start_lsn": ranges[0]["Start-LSN"], "end_lsn": ranges[-1]["End-LSN"], "timeline": ranges[-1]["Timeline"]}
    return [StoredObject(DATA_OBJECT, "data", written.size, written.sha256),
            StoredObject(BACKUP_MANIFEST_OBJECT, "backup_manifest", stored.size, stored.sha256)], wal, manifest_bytes


def combine(bin_dir: Path, backups: list[Path], output: Path) -> None:
    """Rebuild one full data directory from a base backup and its incrementals, oldest first."""
    run([bin_dir / "pg_combinebackup", *backups, "--output", output], timeout=6 * 3600)


def configure_recovery(data: Path, wal_dir: Path, target_time: datetime | None) -> dict[str, str]:
    """Make a rebuilt data directory replay the staged WAL up to `target_time` and promote; return the
    recovery settings to start its server with (command-line settings beat the restored
    postgresql.auto.conf, which stays as it was, like pg_hba.conf: the restore must be byte-faithful).

    Only recovery.signal is written into the data directory (PostgreSQL removes it on promotion).
    Raise ValueError when the WAL folder's path is not shell-safe (restore_command runs through sh).
    """
    settings = {
        "restore_command": restore_command(wal_dir),
        "recovery_target_action": "promote",
        # The restored copy must never push WAL into production's archive.
        "archive_mode": "off",
    }
    if target_time is not None:
        settings["recovery_target_time"] = target_time.isoformat()
    (data / "recovery.signal").touch()
    for leftover in ("postmaster.pid", "postmaster.opts"):   # never in a base backup; a copied folder may hold them
        (data / leftover).unlink(missing_ok=True)
    return settings


def current_wal_lsn(db: PostgresDatabase) -> str:
    """Return the server's current WAL write position (how much WAL a chain has grown by)."""
    with postgres.connect(db) as conn:
        return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


@task(name="close-wal-segment", cache_policy=NO_CACHE)
def close_wal_segment(db: PostgresDatabase) -> dict:
    """Mark a recovery point and close the WAL segment holding it, so that it is archived now rather
    than when it fills. Return the point: the server's time and LSN, and the closed segment's name
    (everything committed before that time is in it or in earlier segments)."""
    with postgres.connect(db, autocommit=True) as conn:
        # An xid makes sure the segment has a record after the point, so the switch really closes it
        # (a switch on an idle server does nothing).
        conn.execute("SELECT txid_current()")
        point_time, point_lsn = conn.execute("SELECT clock_timestamp(), pg_current_wal_lsn()::text").fetchone()
        closed = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        timeline = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0]
    return {"time": point_time, "lsn": point_lsn, "segment": closed, "timeline": int(timeline)}
