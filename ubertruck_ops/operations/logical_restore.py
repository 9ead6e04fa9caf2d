"""Logical restore into a new database: `restore`'s logical body, and the parts it and the restore
drill share.

Before anything is written, verify every object's checksum and that the key decrypts. Then
create the roles the backup needs and a new database owned as the source's was, pg_restore into
it and compare every table's row count with the manifest; anything short of that drops the
database again.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.core import names, notices
from ubertruck_ops.core.manifest import Manifest
from ubertruck_ops.core.reports import restore_report
from ubertruck_ops.core.restore_rules import check_confirmation
from ubertruck_ops.core.steps import Steps, compare_counts
from ubertruck_ops.core.text import one_line
from ubertruck_ops.log import logger
from ubertruck_ops.operations.frame import Operation
from ubertruck_ops.tasks import catalog, load, postgres
from ubertruck_ops.tasks.crypto import GpgSession, gpg_session
from ubertruck_ops.tasks.repository import Repository


class RestoreMismatch(RuntimeError):
    """The restored database does not hold what the manifest says the backup holds."""


def check_backup(repo: Repository, manifest: Manifest, gpg: GpgSession, step: Steps) -> dict:
    """Verify every object of `manifest` against its checksum, then that the key decrypts by reading
    the roles the backup needs; return them. Raise on the first object or key that fails."""
    step("verify checksums")
    load.verify_objects(repo, manifest)
    step("check the key decrypts")
    return load.read_roles(repo, manifest, gpg)


def restore_into(server: PostgresDatabase, database: str, manifest: Manifest, repo: Repository, gpg: GpgSession,
                 roles: dict, drop_leftover: bool = True) -> dict[str, int]:
    """Restore `manifest` into a new database `database` on `server`'s server and verify it.

    Return its row counts. Raise RestoreMismatch (and drop the database) when they differ
    from the manifest's; any failure drops the half-restored database. With `drop_leftover`
    an existing database of that name (an interrupted drill's) is dropped first; without it,
    creating the database fails instead (a unique staging name is someone else's when taken).
    """
    with postgres.connect(server, "postgres", autocommit=True) as admin:
        created = postgres.create_missing_roles(admin, roles)
        if created:
            logger().info("created roles %s without passwords: set them with ALTER ROLE ... PASSWORD", created)
        if drop_leftover:
            postgres.drop_database(admin, database)  # a leftover of an interrupted drill
        postgres.create_database(admin, database, roles.get("database_owner"))
        try:
            load.restore_database(repo, manifest, gpg, server, database, postgres.server_version_num(admin))
            with postgres.connect(server, database) as conn:
                counts = postgres.row_counts(conn, manifest.row_count_keys)
            problems = compare_counts(manifest.row_counts, counts)
            if problems:
                raise RestoreMismatch("restored row counts differ from the manifest: " + "; ".join(problems))
        except BaseException:
            postgres.drop_database(admin, database)
            raise
    return counts


def restore_logical(op: Operation, target_name: str, target: Environment, backup_id: str | None,
                    before: datetime | None, confirm: str | None, files_folder: str | None) -> dict:
    """Restore the backup `backup_id` (default: the newest complete one finished at or before `before`)
    of `op`'s environment into `target`'s database (environment `target_name`): refuse an existing
    target not named in `confirm`; restore into a fresh staging database and verify it; extract the
    file archives into `files_folder` when given; only then swap it in under the target's name,
    keeping the previous database renamed beside it. Report, and return what was done."""
    source, step, repo = op.env, op.step, op.repo
    step("find the backup")
    manifest = catalog.find_backup(repo, backup_id, before)
    op.log.info("restoring backup %s (finished %s) into %s", manifest.backup_id, manifest.finished_at,
                target.database.describe())

    step("check the confirmation")
    require_confirmation(target.database, source.database, confirm)

    with gpg_session(source.encryption, for_restore=True) as gpg:
        roles = check_backup(repo, manifest, gpg, step)
        step("restore into a staging database")
        # One name per run: two restores at once must never drop each other's staging database.
        staging = names.staging_name(target.database.database, secrets.token_hex(4))
        counts = restore_into(target.database, staging, manifest, repo, gpg, roles, drop_leftover=False)
        try:
            extracted = []
            if files_folder:
                step("extract file archives")
                extracted = load.extract_archives(repo, manifest, gpg, files_folder)
            step("swap the restored database in")
            kept_as = swap_in(target.database, staging, roles)
        except BaseException:
            _drop_quietly(target.database, staging)
            raise
    kept_line = [f"the restored database is in place; the previous one is kept as `{kept_as}`"] if kept_as else []
    with op.failure_says(*kept_line):
        step("report")
        duration = op.elapsed
        op.publish("restore-report", f"restore of {manifest.backup_id}",
                   restore_report(manifest.backup_id, target.database.describe(), duration, counts, kept_as,
                                  extracted),
                   notices.restore_succeeded(target_name, target.database.describe(), manifest.backup_id, duration,
                                             kept_as))
        return {"backup_id": manifest.backup_id, "target": target.database.describe(), "kept_as": kept_as,
                "row_counts": counts, "files": extracted, "duration_seconds": round(duration, 2)}


def require_confirmation(target: PostgresDatabase, source: PostgresDatabase, confirm: str | None) -> None:
    """Raise RestoreRefused unless restoring cannot overwrite data, or `confirm` names the target database
    (core/restore_rules.check_confirmation decides; the target's server is asked only when it must)."""

    def exists() -> bool:
        with postgres.connect(target, "postgres", autocommit=True) as admin:
            return postgres.database_exists(admin, target.database)

    check_confirmation(target.database, target.describe(), confirm, target.same_database_as(source), exists)


def swap_in(target: PostgresDatabase, staging: str, roles: dict) -> str | None:
    """Rename the target away (kept) and the staging database to the target's name in one
    transaction, so that either both renames happen or neither; return the kept name."""
    with postgres.connect(target, "postgres", autocommit=True) as admin:
        return postgres.swap_databases(admin, target.database, staging, roles,
                                       lambda attempt: names.kept_name(target.database, datetime.now(UTC),
                                                                       attempt, avoid=(staging,)))


def _drop_quietly(server: PostgresDatabase, database: str) -> None:
    """Drop our own staging database after a failure; a failure to do so is logged, not raised."""
    try:
        with postgres.connect(server, "postgres", autocommit=True) as admin:
            postgres.drop_database(admin, database)
    except Exception as exc:  # noqa: BLE001 - the original failure is the one to report
        logger().warning("could not drop the staging database %s: %s", database, one_line(exc))
