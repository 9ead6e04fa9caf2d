"""`ubertruck-ops wal-archive` as operators run it - a real process streaming a real PostgreSQL 18's
WAL over its slot - under the faults that used to lose WAL: a repository answering 503 for a
minute, a SIGKILL mid-stream, a full disk, a second archiver on the slot, a dropped and an
invalidated slot. Every scenario ends with the same question: is every segment from the first
archived to the server's current one in the repository?"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

from ubertruck_ops.blocks.environment import load_environment, save_environment
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.physical import parse_segment, segment_name
from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.repository import open_repository
from ubertruck_ops.tasks.scratch_postgres import LocalServer
from ubertruck_ops.tasks.wal import archived_files

from tests.helpers import make_database, save_env
from tests.parts import processes

SLOT = "ubertruck_wal"
SEGMENT = 16 << 20
SETTINGS = {"wal_level": "replica", "summarize_wal": "on", "max_wal_senders": "8", "max_replication_slots": "8"}


@pytest.fixture(scope="module")
def server():
    """One PostgreSQL 18 for the module (its slot is dropped after every test)."""
    server = LocalServer(client_bin_dir(), durable=True, settings=SETTINGS).start()
    yield server
    server.destroy()


@pytest.fixture
def database(server):
    db = make_database(server, size_mb=1)
    with server.local_connection() as conn:
        conn.execute(f'ALTER ROLE "{db.user}" REPLICATION')
    with server.local_connection(dbname=db.database) as conn:
        conn.execute("CREATE TABLE wal_probe (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT "
                     "clock_timestamp(), filler text)")
        conn.execute(f'GRANT ALL ON wal_probe TO "{db.user}"')
    yield db
    with server.local_connection() as conn:
        for _ in range(50):    # the archivers are gone; their walsenders end a moment later
            if not conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s AND active",
                                (SLOT,)).fetchone():
                break
            time.sleep(0.2)
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                     (SLOT,))


def with_alerts(env_name: str, slack_url: str | None = None, ping_url: str | None = None) -> None:
    env = load_environment(env_name)
    env.slack = env.slack.model_copy(update={
        "webhook_url": SecretStr(slack_url) if slack_url else None,
        "wal_archive_ping_url": SecretStr(ping_url) if ping_url else None})
    save_environment(env, env_name)


class Archiver:
    """`python -m ubertruck_ops.deployments.cli wal-archive` in a process of its own, its output in a file."""

    count = 0

    def __init__(self, env_name: str, folder: Path, server: LocalServer, state_dir: Path | None = None):
        Archiver.count += 1
        self.server = server
        self.log_path = folder / f"wal-archive-{Archiver.count}.log"
        variables = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        if state_dir is not None:
            variables["UBERTRUCK_STATE_DIR"] = str(state_dir)
        self.spool = Path(variables["UBERTRUCK_STATE_DIR"]) / env_name / f"wal-spool-{SLOT}"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "ubertruck_ops.deployments.cli", "wal-archive",
                                          "--environment", env_name], env=variables, stdout=log,
                                         stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition, timeout: float, what: str, alive: bool = True) -> float:
        started = time.monotonic()
        while not condition():
            if alive:
                assert self.proc.poll() is None, f"wal-archive exited ({self.proc.returncode}): {self.text()[-3000:]}"
            assert time.monotonic() - started < timeout, f"{what} not within {timeout} s: {self.text()[-3000:]}"
            time.sleep(0.2)
        return time.monotonic() - started

    def streaming(self, timeout: float = 60) -> None:
        """Wait until the server shows the slot streamed from (by this archiver's pg_receivewal)."""
        def active() -> bool:
            with self.server.local_connection() as conn:
                row = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s AND active",
                                   (SLOT,)).fetchone()
            return bool(row and self.receivers())
        self.wait_for(active, timeout, "streaming")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=90)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def receivers(self) -> list[int]:
        """The archiver's pg_receivewal processes."""
        return [pid for pid, (parent, line) in processes().items()
                if parent == self.proc.pid and "pg_receivewal" in line]


@pytest.fixture
def archivers():
    started: list[Archiver] = []
    yield started
    for archiver in started:
        archiver.kill()


class Writer:
    """Writes into wal_probe steadily and closes the current WAL segment every `every` seconds, as a
    busy server with archive_timeout would; remembers each row's id and commit time."""

    def __init__(self, server: LocalServer, database: str, every: float = 1.0):
        self.server, self.database, self.every = server, database, every
        self.rows: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        with self.server.local_connection(dbname=self.database) as conn:
            while not self._stop.wait(self.every):
                row = conn.execute("INSERT INTO wal_probe (filler) VALUES (repeat('x', 2000)) RETURNING id").fetchone()
                self.rows.append((row[0], time.time()))
                conn.execute("SELECT pg_switch_wal()")


def current_segment(server: LocalServer) -> str:
    """Close the current segment (after some WAL) and return its name: the newest the archive must hold."""
    with server.local_connection() as conn:
        conn.execute("SELECT txid_current()")
        return conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]


def archived(env_name: str) -> set[str]:
    return set(archived_files(open_repository(load_environment(env_name).repository)))


def missing_between(names: set[str], last: str) -> tuple[str, list[str]]:
    """Return the first archived segment and the segments missing from it to `last`."""
    numbers = sorted(parse_segment(n, SEGMENT)[1] for n in names if parse_segment(n, SEGMENT))
    end = parse_segment(last, SEGMENT)[1]
    return (segment_name(1, numbers[0], SEGMENT),
            [segment_name(1, s, SEGMENT) for s in range(numbers[0], end + 1) if s not in set(numbers)])


def wait_archived(archiver: Archiver, env_name: str, segment: str, timeout: float = 90) -> None:
    archiver.wait_for(lambda: segment in archived(env_name), timeout, f"segment {segment} archived")


def ready_files(archiver: Archiver) -> list[str]:
    ready = archiver.spool / "ready"
    return sorted(os.listdir(ready)) if ready.exists() else []


def test_a_second_archiver_on_the_slot_is_refused_at_once_naming_the_slot_and_the_walsender(
        server, database, archivers, tmp_path):
    env = save_env(database, BackupRepository(url=str(tmp_path / "repository")))
    first = Archiver(env, tmp_path, server)
    archivers.append(first)
    first.streaming()
    with server.local_connection() as conn:
        walsender = conn.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)).fetchone()[0]

    # another backup host: a spool of its own, the same slot
    elsewhere = Archiver(env, tmp_path, server, state_dir=tmp_path / "another-host")
    archivers.append(elsewhere)
    clock = time.monotonic()
    assert elsewhere.proc.wait(timeout=120) == 3, elsewhere.text()
    said = elsewhere.text()
    assert f"replication slot {SLOT} is in use by another archiver" in said
    assert f"walsender pid {walsender}" in said and "client 127.0.0.1" in said, said
    assert time.monotonic() - clock < 60 and said.count("starting pg_receivewal") == 0

    # this host again: the spool's lock names the archiver that holds it
    here = Archiver(env, tmp_path, server)
    archivers.append(here)
    assert here.proc.wait(timeout=120) == 3, here.text()
    assert f"another wal-archive (pid {first.proc.pid} on " in here.text()
    assert first.proc.poll() is None and first.stop() == 0


def test_an_archiver_killed_mid_stream_and_started_again_leaves_no_gap_and_no_process(
        server, database, archivers, tmp_path):
    env = save_env(database, BackupRepository(url=str(tmp_path / "repository")))
    first = Archiver(env, tmp_path, server)
    archivers.append(first)
    first.streaming()
    with Writer(server, database.database, every=0.5):
        first.wait_for(lambda: len(archived(env)) >= 4, 90, "four segments archived")
        receivers = first.receivers()
        assert len(receivers) == 1
        first.kill()
        first.wait_for(lambda: not psutil.pid_exists(receivers[0]), 10, "pg_receivewal gone after the archiver's "
                       "SIGKILL", alive=False)
        time.sleep(3)            # WAL goes on while nobody archives
        second = Archiver(env, tmp_path, server)
        archivers.append(second)
        second.streaming()
        time.sleep(2)
    last = current_segment(server)
    wait_archived(second, env, last)
    first_archived, missing = missing_between(archived(env), last)
    assert missing == [], f"gap after the restart: {missing}"
    receivers = second.receivers()
    assert second.stop() == 0
    assert ready_files(second) == [] and not any(map(psutil.pid_exists, receivers))
    assert not [pid for pid, (parent, _) in processes().items() if parent in (first.proc.pid, second.proc.pid)]


def restored_rows(restored, database: str) -> set[int]:
    with psycopg.connect(host=str(restored.data.parent / "run"), port=restored.port, dbname=database,
                         user="postgres") as conn:
        return {row[0] for row in conn.execute("SELECT id FROM wal_probe")}


def no_failure_open(texts: list[str]) -> bool:
    """Every "WAL archiving is failing" posted so far has been followed by its "caught up"."""
    return sum("WAL archiving is failing" in t for t in texts) == sum("WAL archive caught up" in t for t in texts)


def ping_kinds(pings, since: int = 0, until: int | None = None) -> list[str]:
    """The pings in order from the `since`-th to before the `until`-th, repeats folded: start, success, fail, ..."""
    kinds = []
    for path, _ in pings.pings[since:until]:
        kind = "start" if path.endswith("/start") else "fail" if path.endswith("/fail") else "success"
        if not kinds or kinds[-1] != kind:
            kinds.append(kind)
    return kinds


def test_a_repository_answering_503_for_a_minute_loses_no_segment_and_a_restore_into_the_outage_works(
        server, database, archivers, tmp_path, s3_proxy, s3_client, slack):
    from ubertruck_ops.flows.incremental_backup import incremental_backup
    from ubertruck_ops.tasks.crypto import gpg_session
    from ubertruck_ops.tasks.recovery import check_segments
    from ubertruck_ops.tasks.wal import fetch_segments

    from tests.helpers import s3_repository
    from tests.parts import PingReceiver
    from tests.test_incremental import physical_restore

    pings = PingReceiver().start()
    env = save_env(database, s3_repository(s3_proxy.url, s3_client))
    with_alerts(env, slack.webhook(), f"{pings.url}/ping/wal-check")
    archiver = Archiver(env, tmp_path, server)
    archivers.append(archiver)
    archiver.streaming()
    assert incremental_backup(environment=env)["kind"] == "base"
    with Writer(server, database.database, every=2.5) as writer:
        # Counted from a healthy archiver: moto dates every multipart upload 2010, so the base backup's
        # retention may have aborted an upload of the archiver's as "stale" - a failure and a catch-up of
        # their own. Counted while that failure was still open, the outage joined it and posted no
        # "failing" of its own ("failing counted 0" under load): wait until every failure has caught up.
        archiver.wait_for(lambda: len(archived(env)) >= 3 and "success" in ping_kinds(pings)
                          and no_failure_open(slack.texts()) and ping_kinds(pings)[-1] == "success", 120, "archiving")
        posts, pinged = len(slack.posts), len(pings.pings)
        outage_ends = s3_proxy.fail_for(60)
        time.sleep(30)
        inside = writer.rows[-1]
        target = datetime.fromtimestamp(inside[1] + 0.5, UTC)
        time.sleep(1)
        archiver.wait_for(lambda: time.monotonic() >= outage_ends, 60, "the end of the outage")
        failing_ping = "fail" in ping_kinds(pings, pinged)
        archiver.wait_for(lambda: any("caught up" in t for t in slack.texts()[posts:]), 120, "caught up")
        time.sleep(2)
    last = current_segment(server)
    wait_archived(archiver, env, last)

    names = archived(env)
    first, missing = missing_between(names, last)
    assert missing == [], f"segments lost in the outage: {missing}"
    repo = open_repository(load_environment(env).repository)
    check_segments.fn(repo, 1, parse_segment(first, SEGMENT)[1], parse_segment(last, SEGMENT)[1], SEGMENT)
    during = [n for n in sorted(names) if n > first and n < last]
    with gpg_session(load_environment(env).encryption) as gpg:     # plaintext as received, before/in/after
        fetch_segments.fn(repo, [first, during[len(during) // 2], last], gpg, tmp_path / "fetched")

    texts = slack.texts()[posts:]
    assert sum("WAL archiving is failing" in t for t in texts) == 1, texts
    assert sum("WAL archive caught up" in t for t in texts) == 1, texts
    assert "503 SlowDown" in next(t for t in texts if "failing" in t)
    # Before the outage: /start first, and a success (a slow start or moto's stale-upload abort,
    # above, may have put a /fail of their own in between).
    before = ping_kinds(pings, until=pinged)
    assert before[0] == "start" and "success" in before, pings.pings[:pinged]
    outage = ping_kinds(pings, pinged)
    assert failing_ping and "fail" in outage and outage[-1] == "success", pings.pings
    assert all("http" not in body for _, body in pings.pings)
    said = archiver.text()
    assert "could not archive WAL file" in said and "wait in the spool" in said

    restored = physical_restore(env, target_time=target.isoformat())
    try:
        rows = restored_rows(restored, database.database)
    finally:
        restored.stop_and_remove()
    assert inside[0] in rows and not [i for i, at in writer.rows if at > inside[1] + 1.5 and i in rows]
    assert archiver.stop() == 0 and ready_files(archiver) == []
    pings.stop()


def slot_restart_segment(server: LocalServer) -> int | None:
    with server.local_connection() as conn:
        row = conn.execute("SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s", (SLOT,)).fetchone()
    if not row or not row[0]:
        return None
    high, low = row[0].split("/")
    return ((int(high, 16) << 32) | int(low, 16)) // SEGMENT


def test_segments_confirmed_to_the_server_but_not_archived_survive_a_sigkill_in_the_spool(
        server, database, archivers, tmp_path, s3_proxy, s3_client):
    from tests.helpers import s3_repository

    env = save_env(database, s3_repository(s3_proxy.url, s3_client))
    first = Archiver(env, tmp_path, server)
    archivers.append(first)
    first.streaming()
    s3_proxy.fail_for(600)
    with Writer(server, database.database, every=0.5):
        def confirmed() -> bool:
            ready = [parse_segment(n, SEGMENT)[1] for n in ready_files(first) if parse_segment(n, SEGMENT)]
            restart = slot_restart_segment(server)
            return len(ready) >= 3 and restart is not None and restart > max(ready)
        first.wait_for(confirmed, 90, "three finished segments in the spool, confirmed to the server")
        held = [n for n in ready_files(first) if parse_segment(n, SEGMENT)]
        receivers = first.receivers()
        first.kill()
        first.wait_for(lambda: not any(map(psutil.pid_exists, receivers)), 10, "pg_receivewal gone", alive=False)
    with server.local_connection() as conn:       # the server recycles what the slot no longer keeps
        for _ in range(20):                         # (once its WAL summarizer has read it, too)
            conn.execute("CHECKPOINT")
            if held[0] not in {row[0] for row in conn.execute("SELECT name FROM pg_ls_waldir()")}:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the server still has {held[0]}: this test would prove nothing")

    s3_proxy.clear()
    assert not set(held) & archived(env)            # only the dead archiver's spool holds them
    second = Archiver(env, tmp_path, server)
    archivers.append(second)
    second.streaming()
    last = current_segment(server)
    wait_archived(second, env, last)
    first_archived, missing = missing_between(archived(env), last)
    assert missing == [] and set(held) <= archived(env), missing
    assert second.stop() == 0 and ready_files(second) == []
    assert not [pid for pid, (parent, _) in processes().items() if parent in (first.proc.pid, second.proc.pid)]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs for a local repository (we run as root in the test machine); unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir(mode=0o700)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"mount -t tmpfs needs root: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path: Path) -> None:
    """Write zeros into `path` until its disk is full."""
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass


def test_a_local_repository_out_of_space_loses_nothing_and_the_archiver_resumes_once_space_is_freed(
        server, database, archivers, tmp_path, small_disk, slack):
    env = save_env(database, BackupRepository(url=str(small_disk / "repository")), slack_url=slack.webhook())
    archiver = Archiver(env, tmp_path, server)
    archivers.append(archiver)
    archiver.streaming()
    with Writer(server, database.database, every=1.0):
        archiver.wait_for(lambda: len(archived(env)) >= 2, 60, "archiving")
        filler = small_disk / "filler"
        fill(filler)                               # the disk full, as another tenant of it would make it
        archiver.wait_for(lambda: "No space left on device" in archiver.text() and len(ready_files(archiver)) >= 3, 60,
                          "pushes failing with ENOSPC while segments wait in the spool")
        filler.unlink()
        archiver.wait_for(lambda: any("caught up" in t for t in slack.texts()), 90, "caught up after space was freed")
    last = current_segment(server)
    wait_archived(archiver, env, last)
    assert missing_between(archived(env), last)[1] == []
    assert archiver.stop() == 0 and ready_files(archiver) == []
    assert not list(small_disk.rglob("*.partial")), "a failed write left a half-written object on the full disk"
    assert sum("WAL archiving is failing: ENOSPC" in t for t in slack.texts()) == 1, slack.texts()


def hole_named(text: str) -> tuple[str, str]:
    import re

    found = re.search(r"THE WAL ARCHIVE HAS A HOLE: segments? ([0-9A-F]{24})(?: to ([0-9A-F]{24}))?", text)
    assert found, text[-3000:]
    return found.group(1), found.group(2) or found.group(1)


def lose_the_slot(server, database, archivers, tmp_path, slack, break_it) -> tuple[Archiver, str, str]:
    """Archive a while, stop, break the slot while WAL goes on, start again: return the second
    archiver and the first and last segment it named as the hole."""
    env = save_env(database, BackupRepository(url=str(tmp_path / "repository")), slack_url=slack.webhook())
    first = Archiver(env, tmp_path, server)
    archivers.append(first)
    first.streaming()
    with Writer(server, database.database, every=0.5):
        first.wait_for(lambda: len(archived(env)) >= 2, 60, "archiving")
    assert first.stop() == 0
    before = archived(env)
    break_it()
    second = Archiver(env, tmp_path, server)
    archivers.append(second)
    second.streaming()
    hole = hole_named(second.text())
    time.sleep(8)        # long enough to spin, were it going to
    assert second.text().count("starting pg_receivewal") == 1, second.text()
    last = current_segment(server)
    wait_archived(second, env, last)
    names = archived(env)
    first_archived, missing = missing_between(names, last)
    newest_before = max(n for n in before if parse_segment(n, SEGMENT))
    assert hole[0] == segment_name(1, parse_segment(newest_before, SEGMENT)[1] + 1, SEGMENT)
    assert missing == [segment_name(1, s, SEGMENT) for s in range(parse_segment(hole[0], SEGMENT)[1],
                                                                 parse_segment(hole[1], SEGMENT)[1] + 1)]
    critical = [t for t in slack.texts() if "CRITICAL: the WAL archive has a hole" in t]
    assert len(critical) == 1 and hole[0] in str(slack.posts) and hole[1] in str(slack.posts)
    assert second.stop() == 0
    return second, hole[0], hole[1]


def burn_wal(server: LocalServer, segments: int) -> None:
    with server.local_connection() as conn:
        for _ in range(segments):
            conn.execute("SELECT txid_current()")
            conn.execute("SELECT pg_switch_wal()")
        conn.execute("CHECKPOINT")


def test_a_dropped_slot_is_created_again_and_the_hole_is_named_without_spinning(
        server, database, archivers, tmp_path, slack):
    def drop() -> None:
        with server.local_connection() as conn:
            for _ in range(50):
                if not conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active",
                                    (SLOT,)).fetchone():
                    break
                time.sleep(0.2)
            conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
        burn_wal(server, 4)

    second, first_missing, last_missing = lose_the_slot(server, database, archivers, tmp_path, slack, drop)
    assert f"replication slot {SLOT} does not exist" in second.text()


def test_an_invalidated_slot_is_dropped_and_created_again_and_the_hole_is_named_without_spinning(
        server, database, archivers, tmp_path, slack):
    def invalidate() -> None:
        for _ in range(10):
            burn_wal(server, 4)
            with server.local_connection() as conn:
                if conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                                (SLOT,)).fetchone()[0] == "lost":
                    return
        raise AssertionError("the slot was not invalidated")

    with server.local_connection() as conn:
        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '32MB'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        second, _, _ = lose_the_slot(server, database, archivers, tmp_path, slack, invalidate)
    finally:
        with server.local_connection() as conn:
            conn.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            conn.execute("SELECT pg_reload_conf()")
    assert "was invalidated (wal_status lost)" in second.text()
    with server.local_connection() as conn:
        assert conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                            (SLOT,)).fetchone()[0] != "lost"


def test_a_segment_archived_before_with_other_content_stays_in_the_spool_and_the_others_go_on(
        server, database, archivers, tmp_path, slack):
    import json

    repository = tmp_path / "repository"
    env = save_env(database, BackupRepository(url=str(repository)), slack_url=slack.webhook())
    archiver = Archiver(env, tmp_path, server)
    archivers.append(archiver)
    archiver.streaming()
    ahead = segment_name(1, parse_segment(current_segment(server), SEGMENT)[1] + 3, SEGMENT)
    (repository / "wal").mkdir(parents=True, exist_ok=True)
    (repository / "wal" / f"{ahead}.json").write_text(json.dumps(     # another cluster's segment of that name
        {"name": ahead, "size": SEGMENT, "plain_sha256": "0" * 64, "stored_size": 1, "stored_sha256": "0" * 64}))
    with Writer(server, database.database, every=0.5):
        later = segment_name(1, parse_segment(ahead, SEGMENT)[1] + 3, SEGMENT)
        wait_archived(archiver, env, later)
    wait_archived(archiver, env, current_segment(server))
    assert ready_files(archiver) == [ahead], "the refused segment must stay in the spool, and only it"
    critical = [t for t in slack.texts() if f"CRITICAL: WAL segment {ahead} cannot be archived" in t]
    assert len(critical) == 1, slack.texts()
    assert "already archived with different content" in archiver.text()
    assert archiver.stop() == 0 and ready_files(archiver) == [ahead]     # kept for the next start, too


def test_retention_aborting_stale_uploads_takes_an_upload_that_finished_meanwhile_as_gone(s3_proxy, s3_client):
    """wal-archive uploads all the time into the bucket retention cleans: an upload listed as stale that
    completes (or is aborted) before retention's abort reaches S3 is gone either way, not a failed run."""
    block = s3_repository_block(s3_proxy, s3_client)
    repo = open_repository(block)
    bucket = block.s3_bucket.bucket_name
    s3_client.create_multipart_upload(Bucket=bucket, Key="backups/wal/000000010000000000000001.zst.gpg")
    s3_proxy.fail_next(1, method="DELETE", marker="uploadId", status=404, code="NoSuchUpload")
    assert repo.abort_stale_uploads(timedelta(hours=6)) == 0          # moto dates every upload 2010: all stale


def s3_repository_block(s3_proxy, s3_client) -> BackupRepository:
    from tests.helpers import s3_repository

    return s3_repository(s3_proxy.url, s3_client)


def test_a_write_that_fails_on_a_full_local_repository_leaves_no_half_written_file(small_disk):
    from ubertruck_ops.tasks.repository import LocalRepository

    repo = LocalRepository(str(small_disk / "repository"))
    repo.put_bytes("wal/first.json", b"{}")
    fill(small_disk / "filler")
    with pytest.raises(OSError):
        repo.put_bytes("wal/second.json", b"x" * 65536)
    assert sorted(p.name for p in (small_disk / "repository" / "wal").iterdir()) == ["first.json"]
