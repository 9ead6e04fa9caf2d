"""restore: put a backup back into a database, never half-way.

The story: find the backup; refuse unless an existing target is named in `confirm`;
verify every object's checksum and that the key decrypts (nothing written yet);
recreate the roles it needs; restore into a fresh staging database; compare every
table's row count with the manifest; only then swap it in under the target's name,
keeping the previous database renamed beside it. The guide's `pg_restore --clean`
straight into production could fail halfway and leave neither old nor new data.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.flows.physical_restore import restore_physical
from ubertruck_ops.core import notices
from ubertruck_ops.core.manifest import Manifest
from ubertruck_ops.core.steps import Steps, compare_counts
from ubertruck_ops.core.text import human_seconds, one_line
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import catalog, load, postgres
from ubertruck_ops.tasks.crypto import GpgSession, gpg_session
from ubertruck_ops.tasks.notify import notify
from ubertruck_ops.tasks.repository import open_repository


class RestoreRefused(RuntimeError):
    """The restore would overwrite data without the confirmation that names it."""


class RestoreMismatch(RuntimeError):
    """The restored database does not hold what the manifest says the backup holds."""


@flow(name="restore", description="Restore a backup (default: the latest complete) into a target environment's database.")
def restore(environment: str = "production", backup_id: str | None = None, target_environment: str | None = None,
            confirm: str | None = None, target_time: str | None = None, files_to: str | None = None,
            method: Literal["logical", "physical"] = "logical", data_directory: str | None = None,
            keep_running: bool = False) -> dict:
    """Restore a backup of `environment`.

    logical (default): into `target_environment`'s database (default: the same); overwriting an
    existing database requires `confirm` equal to its name; `target_time` (ISO 8601) picks the
    newest backup finished at or before it; `files_to` extracts the app and config archives into
    that folder (never /).
    physical: rebuild a new cluster in `data_directory` (default: a new temporary folder) from the
    incremental chain and archived WAL, replayed up to `target_time` (default: all archived WAL),
    start it on a port of its own and verify it; it keeps running when `keep_running`.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        backup_id: The backup to restore; empty: the latest complete one (or the newest before target_time).
        target_environment: Whose database receives the restore; empty: environment's own.
        confirm: Required to overwrite an existing database: its exact name.
        target_time: ISO 8601 moment to restore to, e.g. 2026-11-24T17:00:00+05:30.
        files_to: Folder to extract the app and config archives into (never /); empty: not extracted.
        method: logical (nightly dump) or physical (incremental chain + WAL, point in time).
        data_directory: Physical only: where to build the restored cluster; empty: a new temporary folder.
        keep_running: Physical only: leave the restored server running after verifying it.
    """
    if method == "physical":
        return _restore_physical(environment, target_time, data_directory, keep_running)
    log = logger()
    step = Steps(log)
    source = load_environment(environment)
    target_name = target_environment or environment
    target = source if target_name == environment else load_environment(target_name)
    clock = time.monotonic()
    try:
        step("validate parameters")
        before = _parse_time(target_time)
        if files_to is not None and files_to.rstrip("/") == "":
            raise RestoreRefused("files_to=/ would overwrite the host's files: extract into a folder, inspect, then copy")
        repo = open_repository(source.repository)

        step("find the backup")
        manifest = catalog.find_backup(repo, backup_id, before)
        log.info("restoring backup %s (finished %s) into %s", manifest.backup_id, manifest.finished_at,
                 target.database.describe())

        step("check the confirmation")
        require_confirmation(target.database, source.database, confirm)

        with gpg_session(source.encryption, for_restore=True) as gpg:
            step("verify checksums")
            load.verify_objects(repo, manifest)
            step("check the key decrypts")
            roles = load.read_roles(repo, manifest, gpg)
            step("restore into a staging database")
            staging = _staging_name(target.database.database)
            counts = restore_into(target.database, staging, manifest, repo, gpg, roles)
            step("swap the restored database in")
            kept_as = swap_in(target.database, staging, roles)
            extracted = []
            if files_to:
                step("extract file archives")
                extracted = load.extract_archives(repo, manifest, gpg, files_to)
    except Exception as exc:
        notify(target.slack, notices.operation_failed("restore", target_name, step.current,
                                                      one_line(exc)))
        raise
    duration = time.monotonic() - clock
    create_markdown_artifact(key="restore-report", description=f"restore of {manifest.backup_id}", markdown=(
        f"# Restore of `{manifest.backup_id}`\n\n- target: {target.database.describe()}\n"
        f"- duration: {human_seconds(duration)}\n- tables verified: {len(counts)}, rows: {sum(counts.values()):,}\n"
        f"- previous database kept as: {kept_as or 'none (target was new)'}\n- files extracted to: {extracted or 'not requested'}\n"))
    notify(target.slack, notices.restore_succeeded(target_name, target.database.describe(), manifest.backup_id,
                                                   duration, kept_as))
    return {"backup_id": manifest.backup_id, "target": target.database.describe(), "kept_as": kept_as,
            "row_counts": counts, "files": extracted, "duration_seconds": round(duration, 2)}


def require_confirmation(target: PostgresDatabase, source: PostgresDatabase, confirm: str | None) -> None:
    """Raise RestoreRefused unless restoring cannot overwrite data, or `confirm` names the target database."""
    if confirm == target.database:
        return
    if target.same_database_as(source):
        raise RestoreRefused(f"refusing to overwrite the source {target.describe()}: "
                             f"pass confirm={target.database!r} to restore over it")
    with postgres.connect(target, "postgres", autocommit=True) as admin:
        if postgres.database_exists(admin, target.database):
            raise RestoreRefused(f"{target.describe()} exists: pass confirm={target.database!r} to replace it "
                                 "(the current one is kept, renamed)")


def restore_into(server: PostgresDatabase, database: str, manifest: Manifest, repo, gpg: GpgSession,
                 roles: dict) -> dict[str, int]:
    """Restore `manifest` into a new database `database` on `server`'s server and verify it.

    Return its row counts. Raise RestoreMismatch (and drop the database) when they differ
    from the manifest's; any failure drops the half-restored database.
    """
    with postgres.connect(server, "postgres", autocommit=True) as admin:
        created = postgres.create_missing_roles(admin, roles)
        if created:
            logger().info("created roles %s without passwords: set them with ALTER ROLE ... PASSWORD", created)
        postgres.drop_database(admin, database)  # a leftover of an interrupted restore
        postgres.create_database(admin, database, roles.get("database_owner"))
        try:
            load.restore_database(repo, manifest, gpg, server, database, postgres.server_version_num(admin))
            with postgres.connect(server, database) as conn:
                counts = postgres.row_counts(conn)
            problems = compare_counts(manifest.row_counts, counts)
            if problems:
                raise RestoreMismatch("restored row counts differ from the manifest: " + "; ".join(problems))
        except BaseException:
            postgres.drop_database(admin, database)
            raise
    return counts


def swap_in(target: PostgresDatabase, staging: str, roles: dict) -> str | None:
    """Rename the target away (kept) and the staging database to the target's name; return the kept name."""
    kept = None
    with postgres.connect(target, "postgres", autocommit=True) as admin:
        if postgres.database_exists(admin, target.database):
            kept = f"{target.database[:40]}_before_{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
            postgres.rename_database(admin, target.database, kept)
        postgres.rename_database(admin, staging, target.database)
        postgres.grant_database_privileges(admin, target.database, roles)
    return kept


def _staging_name(database: str) -> str:
    return f"{database[:45]}_restoring"


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"target_time {text!r} is not ISO 8601, e.g. 2026-11-24T17:00:00+05:30") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _restore_physical(environment: str, target_time: str | None, data_directory: str | None, keep_running: bool) -> dict:
    env = load_environment(environment)
    step = Steps(logger())
    clock = time.monotonic()
    try:
        step("restore the physical chain")
        with gpg_session(env.encryption, for_restore=True) as gpg:
            result = restore_physical(open_repository(env.repository), gpg, _parse_time(target_time),
                                      data_directory, keep_running)
    except Exception as exc:
        notify(env.slack, notices.operation_failed("point-in-time restore", environment, step.current,
                                                   one_line(exc)))
        raise
    result.pop("server")
    duration = time.monotonic() - clock
    create_markdown_artifact(key="restore-report", description="physical restore", markdown=(
        f"# Physical restore\n\n- chain: {' -> '.join(result['chain'])}\n- target time: {target_time or 'latest'}\n"
        f"- WAL files replayed: {result['wal_files']}\n- data directory: {result['data_directory']}\n"
        f"- server: {'running on 127.0.0.1:' + str(result['port']) if keep_running else 'stopped'}\n"
        f"- duration: {human_seconds(duration)}\n"))
    notify(env.slack, notices.restore_succeeded(environment, result["data_directory"], result["chain"][-1], duration, None))
    return {**result, "duration_seconds": round(duration, 2)}
