"""Incremental backups, WAL archiving and point-in-time restore on a real PostgreSQL 18
that archives through `ubertruck-ops wal-push`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.incremental_backup import incremental_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill
from ubertruck_ops.sandbox import data
from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.repository import open_repository
from ubertruck_ops.tasks.scratch_postgres import LocalServer
from ubertruck_ops.tasks.wal import WalStreamer

from tests.helpers import PG15_BIN, make_database, new_env_name, require, save_env
from tests.parts import table_checksums

PHYSICAL = {"summarize_wal": "on", "wal_level": "replica", "max_wal_senders": "4", "max_replication_slots": "4"}


class ArchivingServer:
    """A PostgreSQL 18 ready for incremental backups, its WAL streamed into the repository."""

    def __init__(self, tmp_path: Path, bin_dir: Path | None = None, settings: dict | None = None):
        self.env_name = new_env_name()
        self.repo_dir = tmp_path / "repository"
        self.bin_dir = bin_dir or client_bin_dir()
        self.server = LocalServer(self.bin_dir, durable=True, settings=settings or PHYSICAL).start()
        self.db = make_database(self.server, size_mb=12)
        with self.server.local_connection(dbname=self.db.database) as conn:
            conn.execute(f'ALTER ROLE "{self.db.user}" REPLICATION')
            # Without incrementals a recovery point is proven by closing a WAL segment (a grant per database).
            conn.execute(f'GRANT EXECUTE ON FUNCTION pg_switch_wal() TO "{self.db.user}"')
        save_env(self.db, BackupRepository(url=str(self.repo_dir)), name=self.env_name)
        env = load_environment(self.env_name)
        self.streamer = WalStreamer(env, open_repository(env.repository), poll_seconds=0.3, environment=self.env_name)
        self.thread = threading.Thread(target=self.streamer.run, daemon=True)
        self.thread.start()

    def switch_and_wait_archived(self, timeout: float = 60) -> str:
        """Close the current WAL segment and wait until the repository holds it."""
        with self.server.local_connection() as conn:
            conn.execute("SELECT txid_current()")   # some WAL, or there is nothing to switch away from
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.repo_dir / "wal" / f"{segment}.json").exists():
                return segment
            assert self.streamer.error is None, self.streamer.error
            time.sleep(0.2)
        raise AssertionError(f"segment {segment} not archived within {timeout} s")

    def destroy(self) -> None:
        self.streamer.stop()
        self.thread.join(timeout=30)
        self.streamer.remove_spool()
        self.server.destroy()


@pytest.fixture
def archiving(tmp_path):
    server = ArchivingServer(tmp_path)
    yield server
    server.destroy()


class Restored:
    """A cluster left running by restore(keep_running=True): reach it over its socket, stop it, remove it."""

    def __init__(self, result: dict, bin_dir: Path | None = None):
        self.data = Path(result["data_directory"])
        self.port = result["port"]
        self.bin_dir = bin_dir or client_bin_dir()

    def checksums(self, database: str) -> dict:
        from ubertruck_ops.blocks.database import PostgresDatabase

        db = PostgresDatabase(host=str(self.data.parent / "run"), port=self.port, database=database, user="postgres")
        return table_checksums(db)

    def stop_and_remove(self) -> None:
        user = "ubertruck-pg" if os.geteuid() == 0 else None
        subprocess.run([self.bin_dir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"], user=user,
                       capture_output=True, timeout=120)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def physical_restore(env: str, bin_dir: Path | None = None, **params) -> Restored:
    return Restored(restore(environment=env, method="physical", keep_running=True, **params), bin_dir)


def test_full_then_two_incrementals_restore_to_identical_content(archiving):
    env, db = archiving.env_name, archiving.db
    first = incremental_backup(environment=env)
    with psycopg.connect(**db.connect_kwargs()) as conn:
        data.add_activity(conn, bookings=200)
    second = incremental_backup(environment=env)
    with psycopg.connect(**db.connect_kwargs()) as conn:
        data.add_activity(conn, bookings=200)
        conn.execute("DELETE FROM admin.audit_log WHERE id % 7 = 0")
    third = incremental_backup(environment=env)
    assert (first["kind"], second["kind"], third["kind"]) == ("base", "incremental", "incremental")
    assert second["parent"] == first["backup_id"] and third["parent"] == second["backup_id"]
    assert third["objects"]["base.tar.zst.gpg"] < first["objects"]["base.tar.zst.gpg"]
    expected = table_checksums(db)
    archiving.switch_and_wait_archived()

    restored = physical_restore(env)
    try:
        assert restored.checksums(db.database) == expected
    finally:
        restored.stop_and_remove()


def test_point_in_time_restore_lands_between_two_commits(archiving):
    env, db = archiving.env_name, archiving.db
    incremental_backup(environment=env)
    with psycopg.connect(**db.connect_kwargs(), autocommit=True) as conn:
        conn.execute("INSERT INTO admin.audit_log (action, entity) VALUES ('pitr-first', 'test')")
        time.sleep(1.5)
        between = datetime.now(UTC)
        time.sleep(1.5)
        conn.execute("INSERT INTO admin.audit_log (action, entity) VALUES ('pitr-second', 'test')")
    archiving.switch_and_wait_archived()

    restored = Restored(restore(environment=env, method="physical", keep_running=True, target_time=between.isoformat()))
    try:
        from ubertruck_ops.blocks.database import PostgresDatabase

        socket_db = PostgresDatabase(host=str(restored.data.parent / "run"), port=restored.port,
                                     database=db.database, user="postgres")
        with psycopg.connect(**socket_db.connect_kwargs()) as conn:
            actions = {r[0] for r in conn.execute("SELECT action FROM admin.audit_log WHERE action LIKE 'pitr-%'")}
        assert actions == {"pitr-first"}
    finally:
        restored.stop_and_remove()


def test_broken_chain_is_refused_naming_the_missing_or_damaged_link(archiving):
    env = archiving.env_name
    incremental_backup(environment=env)
    middle = incremental_backup(environment=env)
    incremental_backup(environment=env)
    [middle_dir] = list(archiving.repo_dir.rglob(middle["backup_id"]))
    data_file = middle_dir / "base.tar.zst.gpg"
    blob = bytearray(data_file.read_bytes())
    blob[len(blob) // 3] ^= 0xFF
    data_file.write_bytes(bytes(blob))

    corrupted = restore(environment=env, method="physical", return_state=True)
    assert corrupted.is_failed() and "base.tar.zst.gpg: stored bytes do not match" in str(corrupted.message)

    shutil.rmtree(middle_dir)
    missing = restore(environment=env, method="physical", return_state=True)
    assert missing.is_failed() and f"needs {middle['backup_id']}, which is missing" in str(missing.message)


def test_wal_gap_before_the_target_time_is_refused_with_the_gap_named(archiving):
    env, db = archiving.env_name, archiving.db
    incremental_backup(environment=env)
    for _ in range(3):
        with psycopg.connect(**db.connect_kwargs()) as conn:
            data.add_activity(conn, bookings=20)
        gap_candidate = archiving.switch_and_wait_archived()
    target = datetime.now(UTC)
    time.sleep(1)
    with psycopg.connect(**db.connect_kwargs()) as conn:
        data.add_activity(conn, bookings=5)
    archiving.switch_and_wait_archived()
    wal_files = sorted(p.name for p in (archiving.repo_dir / "wal").glob("*.zst.gpg"))
    victim = wal_files[-3].removesuffix(".zst.gpg")
    (archiving.repo_dir / "wal" / f"{victim}.json").unlink()

    state = restore(environment=env, method="physical", target_time=target.isoformat(), return_state=True)

    assert state.is_failed()
    assert "WAL missing between backup" in str(state.message) and victim in str(state.message)
    assert gap_candidate


def test_incremental_after_a_server_restart_still_works(archiving):
    env = archiving.env_name
    incremental_backup(environment=env)
    archiving.server.stop()
    archiving.server.start()
    after = incremental_backup(environment=env)
    assert after["kind"] == "incremental"


def test_servers_without_physical_access_are_refused_clearly_and_nothing_is_written(pg15, tmp_path):
    no_replication = save_env(make_database(pg15), BackupRepository(url=str(tmp_path / "r15")))
    state = incremental_backup(environment=no_replication, return_state=True)
    assert state.is_failed() and "lacks the REPLICATION privilege" in str(state.message)
    assert "ALTER ROLE" in str(state.message)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    require((PG15_BIN / "postgres").exists(), "apt-get install -y postgresql-15")


def test_physical_drill_rebuilds_the_chain_and_cleans_up(archiving):
    env = archiving.env_name
    incremental_backup(environment=env)
    with psycopg.connect(**archiving.db.connect_kwargs()) as conn:
        data.add_activity(conn, bookings=30)
    incremental_backup(environment=env)
    archiving.switch_and_wait_archived()
    before = set(Path(tempfile.gettempdir()).glob("ubertruck-restore-*"))

    result = restore_drill(environment=env, mode="physical")

    assert result["passed"] and result["logical"] is None
    report = result["physical"]
    assert report["passed"] and len(report["chain"]) == 2 and report["tables"] == 6
    assert report["wal_files"] >= 1
    assert set(Path(tempfile.gettempdir()).glob("ubertruck-restore-*")) == before


def test_monthly_maintenance_reports_every_drill_mode_from_one_chain(archiving):
    """monthly_maintenance(drill_mode=...) with each mode: one shared chain and nightly backup, one row per drill."""
    from ubertruck_ops.flows.maintenance import monthly_maintenance
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.tasks.checks.orchestration import checklist_rows

    env = archiving.env_name
    logical = nightly_backup(environment=env)["backup_id"]
    chain_end = incremental_backup(environment=env)["backup_id"]
    archiving.switch_and_wait_archived()

    for mode, drills in (("logical", {"restore drill": logical}), ("physical", {"physical restore drill": chain_end}),
                         ("applicable", {"restore drill": logical, "physical restore drill": chain_end})):
        state = monthly_maintenance(environment=env, drill_mode=mode, return_state=True)
        assert state.is_completed(), (mode, state.message)
        rows = {row["name"]: row for row in checklist_rows(state.state_details.flow_run_id)}
        assert {name: row["value"] for name, row in rows.items() if "restore drill" in name} == drills, (mode, rows)
        assert all(rows[name]["status"] == "ok" for name in drills), (mode, rows)


def test_a_backup_taken_while_writes_go_on_restores_consistent(archiving):
    env, db = archiving.env_name, archiving.db
    incremental_backup(environment=env)
    stop = threading.Event()
    written = []

    def writer():
        with psycopg.connect(**db.connect_kwargs()) as conn:
            while not stop.is_set():
                data.add_activity(conn, bookings=5)
                written.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        during = incremental_backup(environment=env)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert during["kind"] == "incremental" and len(written) > 1
    expected = table_checksums(db)
    archiving.switch_and_wait_archived()

    restored = physical_restore(env)
    try:
        assert restored.checksums(db.database) == expected
        from ubertruck_ops.blocks.database import PostgresDatabase

        socket_db = PostgresDatabase(host=str(restored.data.parent / "run"), port=restored.port,
                                     database=db.database, user="postgres")
        with psycopg.connect(**socket_db.connect_kwargs()) as conn:
            orphans = conn.execute("SELECT count(*) FROM payment.payments p LEFT JOIN booking.bookings b "
                                   "ON b.id = p.booking_id WHERE b.id IS NULL").fetchone()[0]
        assert orphans == 0
    finally:
        restored.stop_and_remove()


def test_public_key_backup_host_chains_incrementals_from_its_local_manifest_copy(archiving, tmp_path, monkeypatch):
    import gnupg

    from ubertruck_ops.blocks.encryption import BackupEncryption

    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    key = gpg.gen_key(gpg.gen_key_input(key_type="RSA", key_length=2048, name_email="pk@ubertruck.test",
                                        no_protection=True))
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(home)})
    public_only = BackupEncryption(recipients=[key.fingerprint], public_keys=gpg.export_keys(key.fingerprint))
    env = save_env(archiving.db, BackupRepository(url=str(tmp_path / "pk-repo")), encryption=public_only)
    monkeypatch.setenv("UBERTRUCK_STATE_DIR", str(tmp_path / "state"))

    first = incremental_backup(environment=env)
    second = incremental_backup(environment=env)
    assert (first["kind"], second["kind"]) == ("base", "incremental")

    monkeypatch.setenv("UBERTRUCK_STATE_DIR", str(tmp_path / "a-new-worker"))
    third = incremental_backup(environment=env)
    assert third["kind"] == "base" and "holds only public keys" in third["why"]


def test_a_physical_restore_that_fails_half_way_leaves_nothing_behind(archiving, tmp_path, monkeypatch):
    from ubertruck_ops.tasks import wal

    env = archiving.env_name
    incremental_backup(environment=env)
    archiving.switch_and_wait_archived()

    def broken_fetch(*args, **kwargs):
        raise OSError("disk full while staging WAL")

    monkeypatch.setattr(wal, "fetch_segments", broken_fetch)
    target = tmp_path / "pitr"
    state = restore(environment=env, method="physical", restore_folder=str(target), return_state=True)

    assert state.is_failed() and "disk full while staging WAL" in str(state.message)
    assert target.exists() and list(target.iterdir()) == []


def test_wal_archive_command_streams_until_sigterm(tmp_path):
    import signal

    from prefect.settings import PREFECT_API_URL

    server = LocalServer(client_bin_dir(), durable=True, settings=PHYSICAL).start()
    try:
        db = make_database(server, size_mb=12)
        with server.local_connection() as conn:
            conn.execute(f'ALTER ROLE "{db.user}" REPLICATION')
        env = save_env(db, BackupRepository(url=str(tmp_path / "repository")))
        archiver = subprocess.Popen(
            [sys.executable, "-m", "ubertruck_ops.deployments.cli", "wal-archive", "--environment", env],
            env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            # Close one segment, then wait for it while streaming goes on (switching again each
            # round would always look for the segment closed a moment ago).
            with server.local_connection() as conn:
                conn.execute("SELECT txid_current()")
                segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
            deadline = time.monotonic() + 120
            while not (tmp_path / "repository" / "wal" / f"{segment}.json").exists():
                assert archiver.poll() is None, archiver.communicate()[1][-2000:]
                assert time.monotonic() < deadline, f"segment {segment} was not archived while streaming"
                time.sleep(0.2)
            streamed_after = 120 - (deadline - time.monotonic())
            archiver.send_signal(signal.SIGTERM)
            out, err = archiver.communicate(timeout=60)
        finally:
            if archiver.poll() is None:
                archiver.kill()
        assert (tmp_path / "repository" / "wal" / f"{segment}.json").exists(), err[-2000:]
        assert archiver.returncode == 0 and "stopped after archiving" in out, err[-2000:]
        assert streamed_after < 60, streamed_after
    finally:
        server.destroy()


def test_a_physical_backup_that_fails_stores_neither_its_data_nor_its_manifest(archiving):
    from pydantic import SecretStr

    from ubertruck_ops.tasks import physical
    from ubertruck_ops.tasks.crypto import gpg_session
    from ubertruck_ops.tasks.execute import CommandFailed

    env = load_environment(archiving.env_name)
    refused = env.database.model_copy(update={"password": SecretStr("not-the-password")})
    repo = open_repository(env.repository)
    with gpg_session(env.encryption) as gpg, pytest.raises(CommandFailed, match="pg_basebackup"):
        physical.take_basebackup.fn(refused, gpg, repo, "2026/11/24/failed-backup", None)
    assert not [p for p in archiving.repo_dir.rglob("*") if p.is_file() and "wal" not in p.parts]

    # and the same task with the right password stores both, the manifest decodable by the next incremental
    with gpg_session(env.encryption) as gpg:
        objects, wal_range, manifest = physical.take_basebackup.fn(env.database, gpg, repo, "2026/11/24/good", None)
    assert [o.name for o in objects] == [physical.DATA_OBJECT, physical.BACKUP_MANIFEST_OBJECT]
    assert b'"WAL-Ranges"' in manifest and wal_range["start_lsn"]
    assert sorted(p.name for p in (archiving.repo_dir / "2026/11/24/good").iterdir()) == sorted(o.name for o in objects)
