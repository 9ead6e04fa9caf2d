"""Issue 11, item 5: a logical restore checks every parameter before it touches anything, swaps the
database in last and atomically, names what it kept, and cuts names by bytes as PostgreSQL does;
two restores at once keep out of each other's way. Item 8: values that reach a shell are refused."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core import names
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.operations import frame
from ubertruck_ops.tasks import load, physical
from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.scratch_postgres import LocalServer

from tests.helpers import save_env
from tests.parts import table_checksums


def databases(server, pattern: str) -> list[str]:
    with psycopg.connect(**server.database().connect_kwargs(), autocommit=True) as admin:
        return sorted(r[0] for r in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)))


def add_marker(db, database: str | None = None) -> None:
    with psycopg.connect(**db.connect_kwargs(database), autocommit=True) as conn:
        conn.execute("INSERT INTO admin.audit_log (action, entity) VALUES ('written-after-the-backup', 'test')")


def has_marker(db, database: str | None = None) -> bool:
    with psycopg.connect(**db.connect_kwargs(database)) as conn:
        return conn.execute("SELECT count(*) FROM admin.audit_log WHERE action = 'written-after-the-backup'").fetchone()[0] > 0


# --- values that reach a shell ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["/tmp/$(touch /tmp/x)", "/tmp/`id`", "/tmp/a b", '/tmp/a"b', "/tmp/a'b",
                                 "/tmp/a%f", "/tmp/a,b", "/tmp/a\nb", "/tmp/a;b", "/tmp/a\\b"])
def test_restore_command_refuses_a_wal_folder_a_shell_would_interpret(tmp_path, bad):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ValueError, match="WAL staging folder"):
        physical.configure_recovery(data, Path(bad), None)


def test_recovery_settings_reach_the_server_quoted_and_leave_the_data_directory_alone(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "postgresql.auto.conf").write_text("# production's own\n")
    settings = physical.configure_recovery(data, tmp_path / "wal", datetime(2026, 11, 24, 11, 30, tzinfo=UTC))
    assert settings["restore_command"] == f"cp {tmp_path}/wal/%f %p"
    assert (data / "postgresql.auto.conf").read_text() == "# production's own\n"
    assert sorted(p.name for p in data.iterdir()) == ["postgresql.auto.conf", "recovery.signal"]
    assert names.setting_option("restore_command", settings["restore_command"]) == \
        f"-c 'restore_command=cp {tmp_path}/wal/%f %p'"
    with pytest.raises(ValueError, match="setting archive_command"):
        names.setting_option("archive_command", "cp %p /x/$(id)")


def test_a_server_folder_a_shell_would_interpret_is_refused_before_anything_is_created(tmp_path):
    folder = Path("/tmp") / f"ut-{tmp_path.name}" / "$(touch x)"
    with pytest.raises(ValueError, match="server folder"):
        LocalServer(client_bin_dir(), folder)
    assert not folder.parent.exists()


# --- restore order -----------------------------------------------------------------------------------

def test_a_bad_files_to_fails_before_the_target_is_touched(pg18, source_db, local_repo, tmp_path):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    nightly_backup(environment=env)
    add_marker(source_db)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")

    state = restore(environment=env, confirm=source_db.database, files_to=str(a_file / "restored"), return_state=True)

    assert state.is_failed() and "files_to" in str(state.message) and "is not a folder" in str(state.message)
    assert has_marker(source_db), "the target was replaced although the restore failed"
    assert databases(pg18, f"{source_db.database}%") == [source_db.database]   # nothing renamed, no staging left


def test_a_failure_after_the_swap_names_the_kept_database_in_the_notice(pg18, source_db, local_repo, slack, monkeypatch):
    env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook())
    nightly_backup(environment=env)

    def broken_artifact(**kwargs):
        raise RuntimeError("the Prefect API went away")

    monkeypatch.setattr(frame, "create_markdown_artifact", broken_artifact)
    state = restore(environment=env, confirm=source_db.database, return_state=True)

    assert state.is_failed()
    [kept] = databases(pg18, f"{source_db.database}_before_%")
    failures = [p for p in slack.posts if "FAILED" in json.dumps(p)]
    assert failures and kept in json.dumps(failures[-1]), slack.posts


def test_a_long_multibyte_target_name_restores_with_confirm_and_keeps_a_before_copy(pg18, source_db, local_repo):
    target_name = "ü" * 31   # 62 bytes, 31 characters
    with psycopg.connect(**pg18.database().connect_kwargs(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(target_name),
                                                                    sql.Identifier(source_db.user)))
    target = source_db.model_copy(update={"database": target_name})
    with psycopg.connect(**target.connect_kwargs(), autocommit=True) as conn:
        conn.execute("CREATE TABLE the_old_one (id int)")
    repo = BackupRepository(url=str(local_repo))
    env = save_env(source_db, repo)
    target_env = save_env(target, repo)
    nightly_backup(environment=env)
    try:
        outcome = restore(environment=env, target_environment=target_env, confirm=target_name)

        kept = outcome["kept_as"]
        assert kept and kept != target_name and len(kept.encode()) <= 63 and "_before_" in kept
        assert table_checksums(target) == table_checksums(source_db)
        with psycopg.connect(**target.connect_kwargs(kept)) as conn:
            assert conn.execute("SELECT to_regclass('the_old_one') IS NOT NULL").fetchone()[0]
        assert databases(pg18, "%\\_restoring\\_%") == []
    finally:
        with psycopg.connect(**pg18.database().connect_kwargs(), autocommit=True) as admin:
            for name in databases(pg18, "ü%"):
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_two_restores_into_the_same_target_at_once_both_complete_and_each_keeps_its_own_copy(
        pg18, source_db, local_repo, monkeypatch):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    nightly_backup(environment=env)
    expected = table_checksums(source_db)
    add_marker(source_db)
    # Both staging databases exist before either restore streams into its own: the moment the shared
    # `<db>_restoring` of old was dropped under the other run.
    both_created = threading.Barrier(2, timeout=120)
    real_restore_database = load.restore_database

    def restore_database_after_the_other_started(*args, **kwargs):
        both_created.wait()
        return real_restore_database(*args, **kwargs)

    monkeypatch.setattr(load, "restore_database", restore_database_after_the_other_started)
    states = {}

    def run(name):
        states[name] = restore(environment=env, confirm=source_db.database, return_state=True)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)

    for name, state in states.items():
        assert state.is_completed(), f"{name}: {state.message}"
    kept = sorted(state.result()["kept_as"] for state in states.values())
    assert len(set(kept)) == 2 and databases(pg18, f"{source_db.database}_before_%") == kept
    assert table_checksums(source_db) == expected
    assert sum(has_marker(source_db, k) for k in kept) == 1     # the original data survives in one of them
    assert databases(pg18, f"{source_db.database}_restoring%") == []
