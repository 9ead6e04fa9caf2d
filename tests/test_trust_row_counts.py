"""Row counts keyed unambiguously (issue 22, item 13d): schema `a.b` table `c` and schema `a` table
`b.c` were both `a.b.c` in the manifest, so one table's count overwrote the other's and the restore's
check went blind to it. Real parts: PostgreSQL 18, gpg, a local repository; backup, restore, drill."""

from __future__ import annotations

import json

import psycopg

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import DOTTED, MANIFEST_NAME, QUOTED, Manifest, backup_folder
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill

from tests.helpers import make_database, save_env


def _dotted_tables(db) -> None:
    with psycopg.connect(**db.connect_kwargs()) as conn:
        conn.execute('CREATE SCHEMA "a.b"; CREATE SCHEMA a')
        conn.execute('CREATE TABLE "a.b".c (n int); INSERT INTO "a.b".c SELECT generate_series(1, 3)')
        conn.execute('CREATE TABLE a."b.c" (n int); INSERT INTO a."b.c" SELECT generate_series(1, 5)')


def test_tables_whose_names_hold_dots_each_keep_their_own_row_count_through_backup_restore_and_drill(
        pg18, local_repo):
    db = make_database(pg18, size_mb=1)
    _dotted_tables(db)
    env = save_env(db, BackupRepository(url=str(local_repo)))

    backup = nightly_backup(environment=env)

    manifest = Manifest.from_json((local_repo / backup_folder(backup["backup_id"]) / MANIFEST_NAME).read_bytes())
    both = sorted(n for key, n in manifest.row_counts.items() if key.replace('"', "") == "a.b.c")
    assert both == [3, 5], f"the two tables' counts collided: {both}"
    assert manifest.row_count_keys == QUOTED
    assert manifest.row_counts['"a.b".c'] == 3 and manifest.row_counts['a."b.c"'] == 5
    assert "core.users" in manifest.row_counts                         # plain names read as before
    restored = restore(environment=env, backup_id=backup["backup_id"], confirm=db.database)
    assert restored["row_counts"]['"a.b".c'] == 3 and restored["row_counts"]['a."b.c"'] == 5
    restore_drill(environment=env, backup_id=backup["backup_id"])      # raises DrillFailed on a mismatch


def test_a_manifest_written_before_keys_were_quoted_still_verifies_and_restores(pg18, local_repo):
    """Backward compatible: an earlier release's manifest (no row_count_keys, keys joined by a dot) is
    compared the way it was written."""
    db = make_database(pg18, size_mb=1)
    env = save_env(db, BackupRepository(url=str(local_repo)))
    backup = nightly_backup(environment=env)["backup_id"]
    path = local_repo / backup_folder(backup) / MANIFEST_NAME
    raw = json.loads(path.read_text())
    del raw["row_count_keys"]
    path.write_text(json.dumps(raw))
    assert Manifest.from_json(path.read_bytes()).row_count_keys == DOTTED

    restored = restore(environment=env, backup_id=backup, confirm=db.database)

    assert restored["row_counts"] == raw["row_counts"]
