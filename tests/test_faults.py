"""Bad input and faults: each one fails clearly, leaves nothing that looks complete, and tells Slack."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import gnupg
import psycopg
import pytest
from pydantic import SecretStr

from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import MANIFEST_NAME, Manifest
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill
from ubertruck_ops.tasks import postgres
from ubertruck_ops.tasks.scratch_postgres import free_port

from tests.helpers import save_env
from tests.parts import flow_run_logs, list_databases, table_checksums


def stored_files(repo_dir: Path) -> list[Path]:
    return [p for p in repo_dir.rglob("*") if p.is_file()]


@pytest.mark.parametrize("fault", ["unreachable", "wrong password"])
def test_database_fault_fails_naming_host_and_database_never_the_password(pg18, source_db, local_repo, slack, fault):
    password = "Sentinel-Wrong-Pass-42"
    if fault == "unreachable":
        db = source_db.model_copy(update={"port": free_port(), "password": SecretStr(password)})
    else:
        db = source_db.model_copy(update={"password": SecretStr(password)})
    env = save_env(db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook())

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_failed()
    message = str(state.message)
    assert db.database in message and f"{db.host}:{db.port}" in message
    if fault == "wrong password":
        assert "password authentication failed" in message
    assert password not in message and password not in flow_run_logs(state)
    assert stored_files(local_repo) == []
    [notice] = slack.posts
    assert "nightly backup FAILED" in notice["text"] and password not in str(notice)


def test_pg_dump_killed_mid_stream_fails_and_nothing_is_marked_complete(pg18, source_db, local_repo, tmp_path, monkeypatch):
    real = postgres.tool("pg_dump")
    wrapper = tmp_path / "pg_dump"
    # Emits part of a real dump, then dies by SIGKILL, as an OOM kill would.
    wrapper.write_text(f'#!/bin/bash\n"{real}" "$@" | head -c 200000\nkill -9 $$\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    original = postgres.tool
    monkeypatch.setattr(postgres, "tool", lambda name: str(wrapper) if name == "pg_dump" else original(name))
    env = save_env(source_db, BackupRepository(url=str(local_repo)))

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_failed()
    assert "pg_dump failed (killed by signal 9)" in str(state.message)
    assert stored_files(local_repo) == [], "no manifest and no partial object may remain"


def test_wrong_passphrase_at_restore_fails_before_the_target_is_touched(pg18, source_db, local_repo):
    repo = BackupRepository(url=str(local_repo))
    env = save_env(source_db, repo, passphrase="the-right-passphrase")
    nightly_backup(environment=env)
    wrong = save_env(source_db, repo, passphrase="a-wrong-passphrase")
    before, databases = table_checksums(source_db), list_databases(source_db)

    state = restore(environment=wrong, confirm=source_db.database, return_state=True)

    assert state.is_failed()
    assert "the passphrase (BACKUP_ENCRYPTION_KEY) does not decrypt this backup" in str(state.message)
    assert table_checksums(source_db) == before and list_databases(source_db) == databases


@pytest.fixture(scope="module")
def keypair(tmp_path_factory) -> tuple[str, str, str]:
    """A real GnuPG key pair: (fingerprint, armoured public key, armoured private key)."""
    home = tmp_path_factory.mktemp("gnupg")
    gpg = gnupg.GPG(gnupghome=str(home))
    key = gpg.gen_key(gpg.gen_key_input(key_type="RSA", key_length=2048, name_email="backups@ubertruck.test",
                                        no_protection=True))
    assert key.fingerprint, key.stderr
    public = gpg.export_keys(key.fingerprint)
    private = gpg.export_keys(key.fingerprint, secret=True, expect_passphrase=False)
    os.system(f"GNUPGHOME={home} gpgconf --kill gpg-agent")
    return key.fingerprint, public, private


def test_public_key_backup_needs_the_private_key_to_restore(pg18, source_db, local_repo, keypair):
    fingerprint, public, private = keypair
    repo = BackupRepository(url=str(local_repo))
    backup_host = BackupEncryption(recipients=[fingerprint], public_keys=public)
    env = save_env(source_db, repo, encryption=backup_host)
    before = table_checksums(source_db)
    nightly_backup(environment=env)
    target = pg18.database(f"{source_db.database}_pk")

    without_key = restore(environment=env, target_environment=save_env(target, repo), return_state=True)
    assert without_key.is_failed()
    assert "private key for this backup's recipients is not available" in str(without_key.message)
    assert target.database not in list_databases(target)

    restore_host = save_env(source_db, repo, encryption=BackupEncryption(
        recipients=[fingerprint], public_keys=public, private_key=SecretStr(private)))
    restore(environment=restore_host, target_environment=save_env(target, repo))
    assert table_checksums(target) == before


def test_one_flipped_byte_makes_restore_and_drill_refuse_naming_the_object(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    nightly_backup(environment=env)
    [dump] = list(local_repo.rglob("database.dump.zst.gpg"))
    blob = bytearray(dump.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    dump.write_bytes(bytes(blob))
    before = table_checksums(source_db)

    restored = restore(environment=env, confirm=source_db.database, return_state=True)
    drilled = restore_drill(environment=env, return_state=True)

    for state in (restored, drilled):
        assert state.is_failed()
        assert "database.dump.zst.gpg: stored bytes do not match the manifest" in str(state.message)
    assert table_checksums(source_db) == before


@pytest.mark.parametrize("slack_fault", ["down", "429"])
def test_slack_down_or_rate_limited_does_not_change_the_result(pg18, source_db, local_repo, slack, slack_fault):
    url = f"http://127.0.0.1:{free_port()}/services/x" if slack_fault == "down" else slack.webhook()
    slack.status = 429
    env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=url)

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_completed()
    assert len(list(local_repo.rglob(MANIFEST_NAME))) == 1
    logs = flow_run_logs(state)
    assert "Slack notice not sent" in logs or "Slack answered 429" in logs


def test_two_nightly_backups_at_once_never_interleave(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    states = []

    def one_backup():
        states.append(nightly_backup(environment=env, return_state=True))

    runs = [threading.Thread(target=one_backup) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=300)
    assert [s.is_completed() for s in states] == [True, True]
    first, second = sorted((Manifest.from_json(p.read_bytes()) for p in local_repo.rglob(MANIFEST_NAME)),
                           key=lambda m: m.started_at)
    assert first.finished <= second.started, "the second backup started before the first finished"


def test_restore_onto_the_source_without_confirm_is_refused_and_target_untouched(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    nightly_backup(environment=env)
    with psycopg.connect(**source_db.connect_kwargs()) as conn:
        conn.execute("DELETE FROM admin.audit_log")
    before, databases = table_checksums(source_db), list_databases(source_db)

    for confirm in (None, "production", source_db.database.upper()):
        state = restore(environment=env, confirm=confirm, return_state=True)
        assert state.is_failed()
        assert f"pass confirm='{source_db.database}'" in str(state.message)
    assert table_checksums(source_db) == before and list_databases(source_db) == databases


def test_missing_blocks_fail_with_the_command_that_creates_them(pg18):
    state = nightly_backup(environment="never-initialised", return_state=True)
    assert state.is_failed()
    assert "ubertruck-ops blocks init --name never-initialised" in str(state.message)


def test_a_backup_killed_while_holding_the_lock_does_not_block_the_next_one(source_db, local_repo):
    import json
    import signal
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    lock = Path(os.environ["UBERTRUCK_STATE_DIR"]) / env / "ubertruck-backup.lock"
    child = subprocess.Popen(
        [sys.executable, "-m", "ubertruck_ops.deployments.cli", "run", "nightly-backup", "--param", f"environment={env}"],
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if lock.exists() and "lease_id" in lock.read_text():
                break
            time.sleep(0.02)
        assert child.poll() is None and "lease_id" in json.loads(lock.read_text()), "never saw the lock taken"
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)

    # Under the test API (no lease reaper) the killed run's slot would stay taken for good without
    # the lock file; the next backup finds it, releases that lease and runs at once.
    clock = time.monotonic()
    state = nightly_backup(environment=env, return_state=True)
    assert state.is_completed(), state.message
    assert time.monotonic() - clock < 120
    assert "left by nightly backup" in flow_run_logs(state)
    assert json.loads(lock.read_text()) == {}
