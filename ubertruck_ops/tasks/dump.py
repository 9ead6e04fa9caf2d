"""Write a backup's encrypted objects: the database dump, its roles, the file archives.

Each object is a pipeline (producer | zstd | gpg) streamed into the repository; only
ciphertext ever leaves the pipeline, and only to the repository writer.
"""

from __future__ import annotations

import threading

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.manifest import StoredObject
from ubertruck_ops.core.text import human_bytes
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import archive, postgres
from ubertruck_ops.tasks.crypto import GpgSession, zstd_compress_stage
from ubertruck_ops.tasks.execute import Stage
from ubertruck_ops.tasks.repository import Repository
from ubertruck_ops.tasks.stream import store_stream

DATABASE_OBJECT = "database.dump.zst.gpg"
ROLES_OBJECT = "roles.json.zst.gpg"
APP_OBJECT = "app.tar.zst.gpg"
CONFIG_OBJECT = "config.tar.zst.gpg"


class _DumpProgress:
    """Tracks which tables pg_dump has finished, weighted by their size, from its --verbose lines."""

    def __init__(self, table_bytes: dict[str, int]):
        self.table_bytes = table_bytes
        self.total = max(1, sum(table_bytes.values()))
        self.done = 0
        self.current: str | None = None
        self.lock = threading.Lock()

    def on_line(self, line: str) -> None:
        table = postgres.dumped_table(line)
        if table:
            with self.lock:
                if self.current:
                    self.done += self.table_bytes.get(self.current, 0)
                self.current = table

    def fraction(self) -> float:
        with self.lock:
            return min(0.99, self.done / self.total)


@task(name="dump-database", cache_policy=NO_CACHE)
def dump_database(db: PostgresDatabase, snapshot: postgres.Snapshot, gpg: GpgSession, repo: Repository, folder: str) -> StoredObject:
    """Stream pg_dump of the snapshot through zstd and gpg into the repository, with a progress artifact."""
    progress = _DumpProgress(snapshot.table_bytes)
    artifact_id = create_progress_artifact(0.0, key="nightly-backup-dump",
                                           description=f"pg_dump of {db.database} ({human_bytes(progress.total)} on disk)")

    def report(stored: int) -> None:
        update_progress_artifact(artifact_id, round(progress.fraction() * 100, 1),
                                 description=f"pg_dump of {db.database}: {human_bytes(stored)} stored so far")

    stages = [postgres.pg_dump_stage(db, snapshot.snapshot_id, progress.on_line, snapshot.tools), zstd_compress_stage(),
              gpg.encrypt_stage()]
    written = store_stream(repo, f"{folder}/{DATABASE_OBJECT}", stages, on_progress=report)
    update_progress_artifact(artifact_id, 100.0, description=f"pg_dump of {db.database}: done, {human_bytes(written.size)} stored")
    logger().info("database dump stored: %s, sha256 %s", human_bytes(written.size), written.sha256)
    return StoredObject(DATABASE_OBJECT, "database", written.size, written.sha256)


@task(name="store-roles", cache_policy=NO_CACHE)
def store_roles(described: dict, gpg: GpgSession, repo: Repository, folder: str) -> StoredObject:
    """Store the roles this database needs, encrypted like everything else."""
    written = store_stream(repo, f"{folder}/{ROLES_OBJECT}", [zstd_compress_stage(), gpg.encrypt_stage()],
                           feed=postgres.roles_to_json(described))
    return StoredObject(ROLES_OBJECT, "roles", written.size, written.sha256)


@task(name="archive-files", cache_policy=NO_CACHE)
def archive_files(block: ArchiveSources, gpg: GpgSession, repo: Repository, folder: str) -> tuple[list[StoredObject], list[str]]:
    """Store the application folder and config files as encrypted tar archives.

    Return the stored objects and the paths that were missing (reported, not fatal).
    """
    stored, missing = [], []
    app_stage = archive.app_archive_stage(block)
    if app_stage is None:
        if block.app_root:
            missing.append(block.app_root)
    else:
        stored.append(_store_archive(app_stage, APP_OBJECT, "app", gpg, repo, folder))
    present, absent = archive.present_config_files(block)
    missing += absent
    if present:
        stored.append(_store_archive(archive.config_archive_stage(present), CONFIG_OBJECT, "config", gpg, repo, folder))
    if missing:
        logger().warning("not archived because missing: %s", ", ".join(missing))
    return stored, missing


def _store_archive(stage: Stage, name: str, role: str, gpg: GpgSession, repo: Repository, folder: str) -> StoredObject:
    written = store_stream(repo, f"{folder}/{name}", [stage, zstd_compress_stage(), gpg.encrypt_stage()])
    return StoredObject(name, role, written.size, written.sha256)
