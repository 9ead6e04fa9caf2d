"""Logical restore into a new database: the parts `restore` and the restore drill share.

Before anything is written, verify every object's checksum and that the key decrypts. Then
create the roles the backup needs and a new database owned as the source's was, pg_restore into
it and compare every table's row count with the manifest; anything short of that drops the
database again.
"""

from __future__ import annotations

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.manifest import Manifest
from ubertruck_ops.core.steps import Steps, compare_counts
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import load, postgres
from ubertruck_ops.tasks.crypto import GpgSession
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
