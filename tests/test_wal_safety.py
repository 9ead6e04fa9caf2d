"""The primary is never endangered by our slot, and an archive that falls behind is noticed: a real
PostgreSQL 18 archived by the real `wal-archive` command, which is then stopped while WAL keeps
being written; `watch`, the morning checklist, the six-hourly run and `blocks init` say so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.tasks.checks.orchestration import checklist_rows
from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.scratch_postgres import LocalServer

from tests.helpers import make_database, new_env_name, save_env
from tests.parts import SlackReceiver

# Incrementals (a tier that archives WAL); a small max_wal_size so checkpoints recycle WAL quickly.
SETTINGS = {"summarize_wal": "on", "wal_level": "replica", "max_wal_senders": "4", "max_replication_slots": "4",
            "max_wal_size": "64MB", "min_wal_size": "32MB"}
SLOT = "ubertruck_wal"


@pytest.fixture(scope="module")
def primary():
    server = LocalServer(client_bin_dir(), settings=SETTINGS).start()
    db = make_database(server, size_mb=12)
    with server.local_connection() as conn:
        conn.execute(f'ALTER ROLE "{db.user}" REPLICATION')
    yield server, db
    server.destroy()


def api_env() -> dict:
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def new_environment(db, tmp_path: Path, slack: SlackReceiver | None = None, **limits) -> tuple[str, Path]:
    repo = tmp_path / "repository"
    env = save_env(db, BackupRepository(url=str(repo)), slack_url=slack.webhook() if slack else None)
    CheckThresholds(auth_log=None, disk_paths=["/"], **limits).save(f"{env}-thresholds", overwrite=True)
    return env, repo


def fresh_slot(server: LocalServer, keep_size: str = "-1") -> None:
    """No slot of ours, and max_slot_wal_keep_size as given (each test starts from here)."""
    with server.local_connection() as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                     (SLOT,))
    keep_slot_wal(server, keep_size)


def keep_slot_wal(server: LocalServer, keep_size: str) -> None:
    with server.local_connection() as conn:
        conn.execute(f"ALTER SYSTEM SET max_slot_wal_keep_size = '{keep_size}'")
        conn.execute("SELECT pg_reload_conf()")


def switch(server: LocalServer) -> str:
    with server.local_connection() as conn:
        conn.execute("SELECT txid_current()")      # a record, or there is nothing to switch away from
        return conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]


def write_wal(server: LocalServer, mib: int, switches: int = 0, checkpoint: bool = False) -> None:
    """Write about `mib` MiB of WAL (then close `switches` segments, with a CHECKPOINT after each
    when asked: what makes the server remove WAL a slot may no longer hold)."""
    with server.local_connection() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.ballast (x text)")
        for _ in range(max(1, mib // 8)):
            conn.execute("INSERT INTO public.ballast SELECT repeat(md5(random()::text), 32) FROM "
                         "generate_series(1, 8 * 1024)")       # ~8 MiB of rows (and WAL)
        conn.execute("TRUNCATE public.ballast")
        for _ in range(switches):
            conn.execute("SELECT txid_current()")
            conn.execute("SELECT pg_switch_wal()")
            if checkpoint:
                conn.execute("CHECKPOINT")


def archive_one_segment_then_stop(server: LocalServer, env: str, repo: Path) -> str:
    """Run `ubertruck-ops wal-archive` until a segment closed now is in the repository, then stop it
    with SIGTERM; return that segment (the newest archived)."""
    archiver = subprocess.Popen([sys.executable, "-m", "ubertruck_ops.deployments.cli", "wal-archive",
                                 "--environment", env], env=api_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # pg_receivewal starts in the server's current segment: close segments until one arrives.
        while not any(p.name.endswith(".json") for p in (repo / "wal").glob("*")):
            assert archiver.poll() is None, archiver.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the archiver did not start streaming"
            switch(server)
            time.sleep(2)
        segment = switch(server)
        while not (repo / "wal" / f"{segment}.json").exists():
            assert archiver.poll() is None, archiver.communicate()[1][-2000:]
            assert time.monotonic() < deadline, f"segment {segment} was not archived"
            time.sleep(0.2)
        archiver.send_signal(signal.SIGTERM)
        archiver.communicate(timeout=60)
    finally:
        if archiver.poll() is None:
            archiver.kill()
            archiver.wait()
    return segment


def test_a_stopped_archiver_is_critical_in_watch_within_three_rounds_in_the_checklist_and_the_six_hourly_run(
        primary, tmp_path):
    from ubertruck_ops.flows.checklists import morning_checklist
    from ubertruck_ops.flows.incremental_backup import incremental_backup
    from ubertruck_ops.operations.watch import Watch

    server, db = primary
    fresh_slot(server)                                    # and max_slot_wal_keep_size unlimited (-1)
    slack = SlackReceiver().start()
    try:
        env, repo = new_environment(db, tmp_path, slack, wal_slot_warn_mib=8, wal_slot_critical_mib=24,
                                    wal_lag_critical_segments=2)
        newest = archive_one_segment_then_stop(server, env, repo)
        write_wal(server, 48, switches=3)                 # the archiver is gone; the primary keeps all of it

        limits = CheckThresholds.load(f"{env}-thresholds").model_copy(
            update={"watch_interval_seconds": 1, "watch_rounds_to_alert": 3})
        watcher = Watch(env, load_environment(env), limits, lag_period=1)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not [t for t in watcher.said if t.target == f"wal slot {SLOT}"] and time.monotonic() < deadline:
                time.sleep(0.2)
            said_at = watcher.rounds
            while not [t for t in watcher.said if t.target == "wal archive lag"] and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            watcher.stop()
            thread.join(timeout=30)
        slot_said = [t for t in watcher.said if t.target == f"wal slot {SLOT}"]
        assert slot_said, [(t.target, t.detail) for t in watcher.said]
        assert slot_said[0].kind == "down" and slot_said[0].severity == "critical" and said_at <= 3, said_at
        assert "retains" in slot_said[0].detail and "MiB of WAL on the primary" in slot_said[0].detail
        assert "no consumer" in slot_said[0].detail and f"pg_drop_replication_slot('{SLOT}')" in slot_said[0].detail
        print(f"\nwatch (1 s rounds): slot critical after round {said_at}: {slot_said[0].detail}")
        lag_said = [t for t in watcher.said if t.target == "wal archive lag"]
        assert lag_said and lag_said[0].severity == "critical" and newest in lag_said[0].detail
        assert any(f"wal slot {SLOT}" in text and "critical" in text.lower() for text in slack.texts()), slack.texts()

        state = morning_checklist(environment=env, return_state=True)
        assert state.is_failed()                          # critical items fail the run
        rows = {row["name"]: row for row in checklist_rows(state.state_details.flow_run_id)}
        slot_row, lag_row = rows[f"wal slot {SLOT}"], rows["wal archive lag"]
        assert slot_row["status"] == "critical" and "MiB of WAL on the primary" in slot_row["detail"]
        assert lag_row["status"] == "critical" and f"newest archived {newest}" in lag_row["detail"]
        keep = rows["max_slot_wal_keep_size"]
        assert (keep["status"], keep["severity"]) == ("warn", "low")
        assert "ALTER SYSTEM SET max_slot_wal_keep_size = '48MB'" in keep["detail"]

        posted = len(slack.posts)
        result = incremental_backup(environment=env)
        assert result["wal_lag"]["status"] == "critical" and newest in result["wal_lag"]["detail"]
        assert any("archive lag check" in text for text in slack.texts()[posted:]), slack.texts()[posted:]
    finally:
        slack.stop()
        fresh_slot(server)


def test_a_slot_the_server_invalidated_is_critical_and_names_the_missing_segments(primary, tmp_path):
    from ubertruck_ops.tasks.checks.replication import wal_slot
    from ubertruck_ops.tasks.repository import open_repository

    server, db = primary
    # The limit comes once a segment is archived: each switch while the archiver starts moves 16 MB, and
    # under load a slow archiver fell 32 MB behind and lost its slot before its first segment arrived.
    fresh_slot(server)
    try:
        env, repo = new_environment(db, tmp_path)
        newest = archive_one_segment_then_stop(server, env, repo)
        keep_slot_wal(server, "32MB")
        with server.local_connection() as conn:
            for _ in range(12):
                write_wal(server, 8, switches=1, checkpoint=True)
                if conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                                (SLOT,)).fetchone()[0] == "lost":
                    break
            current = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        loaded = load_environment(env)
        results = {r.name: r for r in wal_slot(loaded.database, loaded.thresholds, env,
                                               open_repository(loaded.repository))}
        lost = results[f"wal slot {SLOT}"]
        first_missing = f"{newest[:16]}{int(newest[16:], 16) + 1:08X}"
        before_current = f"{current[:16]}{int(current[16:], 16) - 1:08X}"
        assert lost.status == "critical" and lost.value == "lost", lost
        hole = (f"segment {first_missing} is missing" if first_missing == before_current else
                f"segments {first_missing} to {before_current} (at most) are missing from the archive")
        assert hole in lost.detail, lost.detail
        assert "force_full=true" in lost.detail and f"pg_drop_replication_slot('{SLOT}')" in lost.detail
        assert results["max_slot_wal_keep_size"].status == "ok"
        print(f"\nlost slot: {lost.detail}")
    finally:
        fresh_slot(server)


def test_blocks_init_warns_loudly_that_max_slot_wal_keep_size_is_unlimited_and_still_succeeds(primary, tmp_path):
    server, db = primary
    fresh_slot(server)
    name = new_env_name()
    env_file = tmp_path / "production.env"
    env_file.write_text(f"DATABASE_URL=postgresql://{db.user}:{db.password.get_secret_value()}@127.0.0.1:"
                        f"{db.port}/{db.database}\nBACKUP_ENCRYPTION_KEY=init-passphrase\n"
                        f"BACKUP_REPOSITORY={tmp_path / 'repo'}\nAPP_ROOT={tmp_path / 'no-app'}\n")
    init = subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", "blocks", "init", "--env-file",
                           str(env_file), "--name", name], env=api_env(), capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr[-3000:]
    assert "six-hourly tier: native-incremental" in init.stdout, init.stdout
    lines = init.stdout.splitlines()
    assert any(line.startswith("WARNING max_slot_wal_keep_size: max_slot_wal_keep_size = -1") and
               "ALTER SYSTEM SET max_slot_wal_keep_size = '8GB'; SELECT pg_reload_conf();" in line
               for line in lines), init.stdout
    assert any(line.startswith(f"WARNING wal slot {SLOT}: no replication slot") and "wal-archive" in line
               for line in lines), init.stdout
    assert db.password.get_secret_value() not in init.stdout + init.stderr

    with server.local_connection() as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '8GB'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        again = subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", "blocks", "init", "--env-file",
                                str(env_file), "--name", name], env=api_env(), capture_output=True, text=True,
                               timeout=300)
        assert "max_slot_wal_keep_size: ok - the server drops slot WAL beyond 8192 MB" in again.stdout, again.stdout
    finally:
        fresh_slot(server)
