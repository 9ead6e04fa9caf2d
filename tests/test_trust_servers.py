"""Issue 11, items 6, 7 and 8 on real servers: every PostgreSQL server the project starts refuses
other local users (socket folder 0700, peer mapped to the project's user only, scram over TCP), runs
in a group of its own, and a physical restore is byte-faithful (roles, passwords, pg_hba.conf) and
refuses a restore_folder that a shell would interpret."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from ubertruck_ops.flows.incremental_backup import incremental_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.sandbox import data
from ubertruck_ops.tasks.scratch_postgres import SERVER_USER

from tests.helpers import PG15_BIN, require
from tests.test_incremental import ArchivingServer, Restored

PSQL = PG15_BIN / "psql"   # world-executable, unlike the project's venv
OUTSIDER = "nobody"


def connect_as(os_user: str, *args: str) -> subprocess.CompletedProcess:
    """Run psql as another local account, with no password available to it."""
    require(PSQL.exists(), "psql is missing: apt-get install -y postgresql-client-15")
    require(os.geteuid() == 0, "connecting as another local user needs root to switch users")
    entry = pwd.getpwnam(os_user)
    return subprocess.run([PSQL, "--no-password", "--no-psqlrc", *args, "-c", "SELECT 1"], user=entry.pw_uid,
                          group=entry.pw_gid, extra_groups=[], env={"PATH": "/usr/bin:/bin", "HOME": "/"},
                          capture_output=True, text=True, timeout=30)


def assert_refuses_other_users(socket_dir: Path, port: int, user: str = "postgres") -> None:
    over_socket = connect_as(OUTSIDER, "-h", str(socket_dir), "-p", str(port), "-U", user, "-d", "postgres")
    over_tcp = connect_as(OUTSIDER, "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "postgres")
    assert over_socket.returncode != 0 and "Permission denied" in over_socket.stderr, over_socket
    assert over_tcp.returncode != 0 and "no password supplied" in over_tcp.stderr, over_tcp
    # Even the server's own account, which can enter the socket folder, is not let in: peer maps only us.
    as_server_user = connect_as(SERVER_USER, "-h", str(socket_dir), "-p", str(port), "-U", user, "-d", "postgres")
    assert as_server_user.returncode != 0 and "authentication failed" in as_server_user.stderr, as_server_user


def assert_private_folders(base: Path, socket_dir: Path) -> None:
    server_uid = pwd.getpwnam(SERVER_USER).pw_uid
    sockets = socket_dir.stat()
    assert stat.S_IMODE(sockets.st_mode) == 0o700 and sockets.st_uid == server_uid
    assert stat.S_IMODE(base.stat().st_mode) & 0o077 == 0


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def process_ids(pid: int) -> dict[str, list[int]]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(v) for v in value.split()]
    return fields


# --- scratch and test servers ------------------------------------------------------------------------

def test_another_local_user_cannot_connect_to_a_scratch_server_over_its_socket_or_tcp(pg18):
    assert_private_folders(pg18.base, pg18.base / "run")
    assert_refuses_other_users(pg18.base / "run", pg18.port)
    # while the project gets in: by password over TCP, by peer over the socket; a wrong password is refused
    with psycopg.connect(**pg18.database().connect_kwargs()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pg18.local_connection() as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=pg18.port, user="postgres", dbname="postgres", password="wrong")


def test_a_postgresql_15_server_refuses_other_local_users_too(pg15):
    assert_private_folders(pg15.base, pg15.base / "run")
    assert_refuses_other_users(pg15.base / "run", pg15.port)


def test_the_server_process_runs_in_a_group_of_its_own_not_root(pg18):
    ids = process_ids(postmaster_pid(pg18.data))
    server = pwd.getpwnam(SERVER_USER)
    assert ids["Uid"][0] == server.pw_uid
    assert 0 not in ids["Gid"] and set(ids["Gid"]) == {server.pw_gid}
    assert ids["Groups"] == [], "the server kept root's supplementary groups"


# --- physical restores ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """One archiving PostgreSQL 18 with a base and an incremental backup and archived WAL, for every
    physical test here."""
    server = ArchivingServer(tmp_path_factory.mktemp("trust-chain"))
    try:
        incremental_backup(environment=server.env_name)
        with psycopg.connect(**server.db.connect_kwargs()) as conn:
            data.add_activity(conn, bookings=30)
        incremental_backup(environment=server.env_name)
        server.switch_and_wait_archived()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def restored(chain):
    """The chain restored with keep_running into a restore_folder of our choosing."""
    folder = Path(tempfile.mkdtemp(prefix="ut-trust-restore-"))
    folder.chmod(0o711)   # the server user may pass through, nobody may list it
    target = folder / "pitr"
    try:
        running = Restored(restore(environment=chain.env_name, method="physical", keep_running=True,
                                   restore_folder=str(target)))
        yield running, target
        running.stop_and_remove()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def authid(conn) -> list[tuple]:
    return conn.execute("SELECT rolname, rolsuper, rolcanlogin, rolpassword FROM pg_authid ORDER BY rolname").fetchall()


def test_a_physical_restore_leaves_pg_authid_as_it_was_in_the_source(chain, restored):
    running, _ = restored
    with chain.server.local_connection() as conn:
        source = authid(conn)
    with psycopg.connect(host=str(running.data.parent / "run"), port=running.port, user="postgres",
                         dbname="postgres") as conn:
        assert authid(conn) == source
    # production's own passwords apply over TCP
    with psycopg.connect(**chain.db.model_copy(update={"port": running.port}).connect_kwargs()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (chain.db.user,)


def test_a_physical_restore_leaves_the_restored_configuration_files_as_backed_up(chain, restored):
    running, _ = restored
    for name in ("pg_hba.conf", "pg_ident.conf", "postgresql.conf", "postgresql.auto.conf"):
        assert (running.data / name).read_bytes() == (chain.server.data / name).read_bytes(), name
    assert not (running.data / "pg_hba.conf.from-backup").exists()


def test_another_local_user_cannot_connect_to_a_restored_server(restored):
    running, target = restored
    assert_private_folders(target, target / "run")
    assert stat.S_IMODE(running.data.stat().st_mode) == 0o700
    assert_refuses_other_users(target / "run", running.port)
    assert 0 not in process_ids(postmaster_pid(running.data))["Gid"]


def test_a_restore_folder_holding_a_command_substitution_is_refused_and_never_run(chain):
    marker = Path("/tmp") / f"ut-injected-{secrets.token_hex(4)}"
    parent = Path(tempfile.mkdtemp(prefix="ut-trust-inject-"))
    parent.chmod(0o711)   # reachable by the server user: the refusal must come from the check itself
    try:
        state = restore(environment=chain.env_name, method="physical", return_state=True,
                        restore_folder=f"{parent}/$(touch {marker})")
        assert state.is_failed()
        assert "restore_folder" in str(state.message) and "a shell" in str(state.message), state.message
        assert not marker.exists(), "the command in restore_folder was run"
        assert list(parent.iterdir()) == [], "the restore created folders before refusing"
    finally:
        marker.unlink(missing_ok=True)
        shutil.rmtree(parent, ignore_errors=True)
