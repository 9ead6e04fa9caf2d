"""The guide's PostgreSQL 15, self-managed: the six-hourly run is a base backup plus the continuous
WAL archive, with a recovery point proven every run; point-in-time restore and the monthly drill
work on it with PostgreSQL 15's own server binaries."""

from __future__ import annotations

import shutil
import time

import psycopg
import pytest

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.physical import WalGap, parse_segment, segment_of
from ubertruck_ops.flows.incremental_backup import incremental_backup
from ubertruck_ops.flows.maintenance import monthly_maintenance
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.tasks import recovery
from ubertruck_ops.tasks.checks.orchestration import checklist_rows
from ubertruck_ops.tasks.repository import LocalRepository

from tests.helpers import PG15_BIN, new_env_name, require, save_env
from tests.test_incremental import ArchivingServer, Restored

PG15_PHYSICAL = {"wal_level": "replica", "max_wal_senders": "4", "max_replication_slots": "4"}


def commit_marker(db, action: str):
    """Commit one audit row; return the server's clock just after the commit."""
    with psycopg.connect(**db.connect_kwargs(), autocommit=True) as conn:
        conn.execute("INSERT INTO admin.audit_log (action, entity) VALUES (%s, 'pg15-chain')", (action,))
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def markers(restored: Restored, database: str) -> set[str]:
    from ubertruck_ops.blocks.database import PostgresDatabase

    socket_db = PostgresDatabase(host=str(restored.data.parent / "run"), port=restored.port, database=database,
                                 user="postgres")
    with psycopg.connect(**socket_db.connect_kwargs()) as conn:
        return {r[0] for r in conn.execute("SELECT action FROM admin.audit_log WHERE entity = 'pg15-chain'")}


@pytest.fixture(scope="module")
def chain15(tmp_path_factory):
    """A PostgreSQL 15 server (TCP, scram, a backup role with REPLICATION) archiving its WAL, and a
    base plus two recovery points taken by three six-hourly runs, a commit before each point."""
    require((PG15_BIN / "postgres").exists(), "PostgreSQL 15 is missing: apt-get install -y postgresql-15")
    server = ArchivingServer(tmp_path_factory.mktemp("pg15-chain"), bin_dir=PG15_BIN, settings=PG15_PHYSICAL)
    try:
        runs, commits = [incremental_backup(environment=server.env_name)], []
        for action in ("first", "second"):
            commits.append(commit_marker(server.db, action))
            time.sleep(1.2)
            runs.append(incremental_backup(environment=server.env_name))
        server.runs, server.commits = runs, commits
        yield server
    finally:
        server.destroy()


def test_postgres15_six_hourly_runs_take_a_base_then_prove_two_recovery_points(chain15):
    base, first, second = chain15.runs
    assert {run["tier"] for run in chain15.runs} == {"base-and-wal"}
    assert "PostgreSQL 15 has no incremental backup" in base["tier_why"]
    assert (base["kind"], first["kind"], second["kind"]) == ("base", "recovery-point", "recovery-point")
    points = [first["recovery_point"], second["recovery_point"]]
    assert all(p["base"] == base["backup_id"] for p in points)
    # Each point lies after the commit before it, and the second run checked only the WAL after the first.
    assert points[0]["time"] > chain15.commits[0].isoformat() and points[1]["time"] > chain15.commits[1].isoformat()
    seg = lambda name: parse_segment(name, 16 << 20)[1]
    assert seg(points[1]["segment"]) > seg(points[0]["segment"])
    assert points[1]["segments_checked"] == seg(points[1]["segment"]) - seg(points[0]["segment"])
    repo = LocalRepository(str(chain15.repo_dir))
    assert recovery.latest_point(repo, base["backup_id"]) == points[1]
    assert base["wal_gaps"] == first["wal_gaps"] == second["wal_gaps"] == []


def test_postgres15_point_in_time_restore_between_two_commits_has_the_first_and_not_the_second(chain15):
    between = chain15.commits[0]   # just after the first commit, over a second before the second
    restored = Restored(restore(environment=chain15.env_name, method="physical", keep_running=True,
                                target_time=between.isoformat()), PG15_BIN)
    try:
        assert markers(restored, chain15.db.database) == {"first"}
    finally:
        restored.stop_and_remove()


def test_postgres15_monthly_maintenance_is_green_with_the_logical_and_the_physical_drill(chain15):
    logical = nightly_backup(environment=chain15.env_name)["backup_id"]

    state = monthly_maintenance(environment=chain15.env_name, return_state=True)

    assert state.is_completed(), state.message
    rows = {row["name"]: row for row in checklist_rows(state.state_details.flow_run_id)}
    assert rows["restore drill"]["value"] == logical and rows["restore drill"]["status"] == "ok"
    assert rows["physical restore drill"]["value"] == chain15.runs[0]["backup_id"]
    assert rows["physical restore drill"]["status"] == "ok"


def test_postgres15_a_missing_wal_segment_between_the_base_and_the_target_is_refused_naming_it(chain15, tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(chain15.repo_dir, copy)
    victim = chain15.runs[1]["recovery_point"]["segment"]     # between the base and the second commit
    for leftover in (copy / "wal").glob(f"{victim}.*"):
        leftover.unlink()
    env = save_env(chain15.db, BackupRepository(url=str(copy)), name=new_env_name())

    state = restore(environment=env, method="physical", target_time=chain15.commits[1].isoformat(), return_state=True)
    assert state.is_failed() and "WAL missing between backup" in str(state.message)
    assert victim in str(state.message)

    # The six-hourly proof finds the same hole, even where it reads no bytes again (before the last point).
    size, points = 16 << 20, [run["recovery_point"] for run in chain15.runs[1:]]
    base_start = parse_segment(points[0]["segment"], size)[1] - points[0]["segments_checked"] + 1
    last = parse_segment(points[1]["segment"], size)[1]
    with pytest.raises(WalGap, match=victim):
        recovery.check_segments.fn(LocalRepository(str(copy)), 1, base_start, last, size, verify_from=last)

    # A damaged segment is named too.
    damaged = points[1]["segment"]
    stored = copy / "wal" / f"{damaged}.zst.gpg"
    flipped = bytearray(stored.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    stored.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=f"{damaged} is damaged"):
        recovery.check_segments.fn(LocalRepository(str(copy)), 1, last, last, size)


def test_postgres15_wal_older_than_three_days_stays_while_the_chain_replays_it(chain15, tmp_path):
    """The base may be up to 7 days old and a restore replays every segment since it: WAL retention's
    3 days must not cut the chain (a clock 4 days on, every archived segment then older than 3 days)."""
    import os

    from ubertruck_ops.core.physical import ServerFacts
    from ubertruck_ops.operations.physical_backup import wal_retention

    copy = tmp_path / "repository"
    shutil.copytree(chain15.repo_dir, copy)
    four_days_ago = time.time() - 4 * 86400
    archived = sorted((copy / "wal").iterdir())
    for path in archived:
        os.utime(path, (four_days_ago, four_days_ago))
    facts = ServerFacts(150000, False, "replica", True, None, "-", 1, 16 << 20)

    wal_retention(LocalRepository(str(copy)), facts, keep_wal_days=3)

    size = 16 << 20
    base_start = segment_of(chain15.runs[0]["wal"]["start_lsn"], size)
    since_base = lambda paths: {p.name for p in paths if (parse_segment(p.name.split(".")[0], size) or (0, -1))[1]
                                >= base_start}
    assert since_base(archived) and since_base((copy / "wal").iterdir()) == since_base(archived)


def test_a_repository_that_cannot_be_read_fails_the_wait_at_once_instead_of_waiting_it_out(tmp_path):
    (tmp_path / "wal").write_text("a file where the WAL folder should be")   # reading any sidecar fails
    started = time.monotonic()
    with pytest.raises(NotADirectoryError):
        recovery.wait_until_archived.fn(LocalRepository(str(tmp_path)), "000000010000000000000003", timeout=30)
    assert time.monotonic() - started < 5
    with pytest.raises(recovery.WalNotArchived, match="not archived within 1 s"):   # absent: waited, then named
        recovery.wait_until_archived.fn(LocalRepository(str(tmp_path / "empty")), "000000010000000000000003",
                                        timeout=1, poll=0.2)
