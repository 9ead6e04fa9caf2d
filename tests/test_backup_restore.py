"""End to end on a local repository: back up, drop, restore, compare real databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import MANIFEST_NAME, Manifest
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.sandbox import data

from tests.helpers import save_env
from tests.parts import flow_run_artifacts, list_databases, table_checksums


def manifests_in(repo_dir) -> list[Manifest]:
    return [Manifest.from_json(p.read_bytes()) for p in sorted(repo_dir.rglob(MANIFEST_NAME))]


def test_backup_then_drop_then_restore_gives_back_identical_tables(pg18, source_db, local_repo, app_tree, tmp_path):
    env = save_env(source_db, BackupRepository(url=str(local_repo)), app_root=app_tree)
    before = table_checksums(source_db)

    result = nightly_backup(environment=env)

    [manifest] = manifests_in(local_repo)
    assert manifest.backup_id == result["backup_id"]
    assert {t: c for t, (c, _) in before.items()} == manifest.row_counts
    folder = local_repo / manifest.backup_id[0:4] / manifest.backup_id[4:6] / manifest.backup_id[6:8] / manifest.backup_id
    assert sorted(p.name for p in folder.iterdir()) == sorted([o.name for o in manifest.objects] + [MANIFEST_NAME])
    assert {o.role for o in manifest.objects} == {"database", "roles", "app", "config"}

    with psycopg.connect(**source_db.connect_kwargs("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{source_db.database}" WITH (FORCE)')
    assert source_db.database not in list_databases(source_db)

    # Disaster recovery onto the source's own name still has to name it.
    outcome = restore(environment=env, confirm=source_db.database, files_to=str(tmp_path / "restored-files"))

    assert table_checksums(source_db) == before
    assert outcome["kept_as"] is None
    restored_app = tmp_path / "restored-files" / "app" / "current" / "user-service"
    assert (restored_app / "dist" / "main.js").read_text() == "console.log('user-service v1.0.0')\n"
    assert not (restored_app / "node_modules").exists(), "node_modules must not be archived"
    assert list((tmp_path / "restored-files" / "config").rglob(".env.production"))


def test_stored_objects_are_encrypted_not_plaintext(pg18, source_db, local_repo, app_tree):
    env = save_env(source_db, BackupRepository(url=str(local_repo)), app_root=app_tree)
    with psycopg.connect(**source_db.connect_kwargs()) as conn:
        phone = conn.execute("SELECT phone FROM core.users LIMIT 1").fetchone()[0]
    nightly_backup(environment=env)
    stored = [p for p in local_repo.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]
    assert len(stored) == 4
    for path in stored:
        blob = path.read_bytes()
        # An OpenPGP symmetric-key session packet (tag 3) opens every object; no pg_dump or tar header shows.
        assert blob[0] in (0x8C, 0xC3), f"{path.name} does not start with an OpenPGP packet"
        # Its body (RFC 4880 5.3, 3.7.1.3): version 4, AES256 (9), iterated+salted S2K (3) over
        # SHA512 (10), 8 salt bytes, then the coded count: 255, the strongest stretching there is.
        body = blob[2:]
        assert (body[0], body[1], body[2], body[3], body[12]) == (4, 9, 3, 10, 255), f"{path.name}: {body[:13].hex()}"
        assert b"PGDMP" not in blob and phone.encode() not in blob and b"NODE_ENV" not in blob
        assert b"ustar" not in blob


def test_manifest_records_versions_checksums_and_no_secret(pg18, source_db, local_repo):
    passphrase = "manifest-passphrase-SENTINEL"
    env = save_env(source_db, BackupRepository(url=str(local_repo)), passphrase=passphrase)
    nightly_backup(environment=env)
    [path] = list(local_repo.rglob(MANIFEST_NAME))
    text = path.read_text()
    raw = json.loads(text)
    assert raw["kind"] == "logical" and raw["database"]["server_version"].startswith("18")
    assert raw["tools"]["pg_dump"].startswith("pg_dump (PostgreSQL) 18")
    assert all(len(o["sha256"]) == 64 and o["size"] > 0 for o in raw["objects"])
    assert passphrase not in text and source_db.password.get_secret_value() not in text


def test_restore_over_existing_database_requires_confirm_and_keeps_the_old_one(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    original = table_checksums(source_db)
    nightly_backup(environment=env)
    with psycopg.connect(**source_db.connect_kwargs()) as conn:
        data.add_activity(conn, bookings=50)
    changed = table_checksums(source_db)
    assert changed != original

    state = restore(environment=env, return_state=True)
    assert state.is_failed()
    assert "confirm" in str(state.message)
    assert table_checksums(source_db) == changed, "a refused restore must leave the target untouched"

    outcome = restore(environment=env, confirm=source_db.database)
    assert table_checksums(source_db) == original
    assert outcome["kept_as"] in list_databases(source_db)
    assert table_checksums(source_db, outcome["kept_as"]) == changed


def test_restore_into_another_environment_creates_a_new_database_with_roles_and_grants(pg18, pg15, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    before = table_checksums(source_db)
    nightly_backup(environment=env)
    target_db = pg18.database(f"{source_db.database}_copy")
    target_env = save_env(target_db, BackupRepository(url=str(local_repo)))

    restore(environment=env, target_environment=target_env)

    assert table_checksums(target_db) == before
    with psycopg.connect(**target_db.connect_kwargs()) as conn:
        grants = conn.execute("SELECT has_table_privilege('ubertruck_readonly', 'booking.bookings', 'SELECT'), "
                              "has_database_privilege('ubertruck_readonly', current_database(), 'CONNECT')").fetchone()
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'bookings'").fetchone()[0]
    assert grants == (True, True)
    assert owner == source_db.user


def test_restore_picks_the_newest_backup_before_target_time(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    first = nightly_backup(environment=env)
    [m1] = manifests_in(local_repo)
    with psycopg.connect(**source_db.connect_kwargs()) as conn:
        data.add_activity(conn, bookings=20)
    import time
    time.sleep(1.1)
    nightly_backup(environment=env)
    outcome = restore(environment=env, confirm=source_db.database, target_time=m1.finished_at)
    assert outcome["backup_id"] == first["backup_id"]
    assert {t: c for t, (c, _) in table_checksums(source_db).items()} == m1.row_counts


def test_restore_rejects_bad_input_clearly(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    nightly_backup(environment=env)
    for params, expected in [
        ({"backup_id": "../../etc"}, "is not of the form"),
        ({"backup_id": "20990101T000000Z-logical-abcdef"}, "has no manifest"),
        ({"target_time": "yesterday"}, "not ISO 8601"),
        ({"target_time": "2001-01-01T00:00:00Z"}, "no complete logical backup finished before"),
        ({"files_to": "/"}, "files_to=/"),
        ({"target_environment": "no-such-env"}, "blocks init --name no-such-env"),
    ]:
        state = restore(environment=env, return_state=True, **params)
        assert state.is_failed(), params
        with pytest.raises(Exception, match=expected):
            state.result()


def test_retention_removes_expired_backups_and_stale_leftovers_but_keeps_recent_ones(pg18, source_db, local_repo):
    import os
    import time as clock

    env = save_env(source_db, BackupRepository(url=str(local_repo), keep_full_days=30))
    nightly_backup(environment=env)
    [template] = list(local_repo.rglob(MANIFEST_NAME))
    raw = json.loads(template.read_text())

    def fake_backup(backup_id: str, age_days: float, complete: bool):
        folder = local_repo / backup_id[0:4] / backup_id[4:6] / backup_id[6:8] / backup_id
        folder.mkdir(parents=True)
        (folder / "database.dump.zst.gpg").write_bytes(b"\x8c" + os.urandom(64))
        if complete:
            finished = (datetime.now(UTC) - timedelta(days=age_days)).isoformat(timespec="seconds")
            (folder / MANIFEST_NAME).write_text(json.dumps({**raw, "backup_id": backup_id, "finished_at": finished,
                                                            "started_at": finished}))
        stamp = clock.time() - age_days * 86400
        for path in folder.iterdir():
            os.utime(path, (stamp, stamp))
        return folder

    expired = fake_backup("20261001T020000Z-logical-aaaaaa", 40, complete=True)
    kept = fake_backup("20261110T020000Z-logical-bbbbbb", 10, complete=True)
    stale = fake_backup("20261120T020000Z-logical-cccccc", 2, complete=False)
    running = fake_backup("20261124T000000Z-logical-dddddd", 0.01, complete=False)

    state = nightly_backup(environment=env, return_state=True)

    assert state.result()["retention"]["expired"] == ["20261001T020000Z-logical-aaaaaa"]
    assert not expired.exists() and not stale.exists()
    assert kept.exists() and running.exists(), "recent backups and a possibly running one must stay"
    progress = [a for a in flow_run_artifacts(state) if a.key == "nightly-backup-dump"]
    assert progress and progress[0].type == "progress" and float(progress[0].data) == 100.0
