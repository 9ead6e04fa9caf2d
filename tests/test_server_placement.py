"""A checkout in a private folder (/root, a Debian 12 home, `mktemp -d`: 0700) runs its PostgreSQL
servers as root without any folder of the operator's being opened (tasks/server_placement.py)."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest

from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.scratch_postgres import SERVER_USER, LocalServer
from ubertruck_ops.tasks.server_placement import (
    BINARIES_ROOT,
    DATA_ROOT,
    STAMP,
    data_folder,
    installation_parts,
    server_binaries,
)

from tests.helpers import require


@pytest.fixture(autouse=True)
def as_root():
    """These tests are about what root does (it runs the servers as another user): as anyone else they
    fail, saying how to run them, rather than pass unseen."""
    require(os.geteuid() == 0, "these tests need root (the servers run as another user): run `sudo ./ops test`")


@pytest.fixture
def private_checkout():
    """A folder only root may enter, holding what a checkout's .venv holds of PostgreSQL: the wheel's
    installation and the libraries beside it, at the same places relative to each other."""
    folder = Path(tempfile.mkdtemp(prefix="ubertruck-private-"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    base, parts = installation_parts(client_bin_dir().parent)
    site = folder / "checkout" / ".venv" / "site-packages"
    for part in parts:
        shutil.copytree(base / part, site / part, symlinks=True)
    yield folder, site / parts[0] / "bin"
    shutil.rmtree(folder, ignore_errors=True)


def test_a_scratch_server_from_a_checkout_in_a_0700_folder_runs_from_a_verified_root_owned_copy(private_checkout):
    folder, bin_dir = private_checkout

    with LocalServer(bin_dir, scratch=True) as server, \
            psycopg.connect(**server.database().connect_kwargs(), autocommit=True) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone()[0] == str(server.data)
        assert conn.execute("SELECT 6 * 7").fetchone()[0] == 42

    placed = server.bin_dir
    assert placed.is_relative_to(BINARIES_ROOT) and placed != bin_dir
    copy = BINARIES_ROOT / placed.relative_to(BINARIES_ROOT).parts[0]
    assert (copy / STAMP).read_text().strip().startswith(copy.name.rsplit("-", 1)[1])   # named by its digest
    for path in (BINARIES_ROOT, copy, placed, placed / "postgres"):
        assert path.stat().st_uid == 0 and stat.S_IMODE(path.stat().st_mode) == 0o755
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700     # nothing of the operator's was opened
    # The next server of the same build reuses the copy.
    assert server_binaries(bin_dir) == placed and LocalServer(bin_dir).bin_dir == placed


def test_a_server_folder_inside_a_0700_folder_goes_under_the_state_folder_and_the_same_place_gets_the_same_folder(
        private_checkout):
    folder, bin_dir = private_checkout
    wanted = folder / "checkout" / ".sandbox" / "postgres"

    moved = data_folder(wanted)

    assert moved.parent == DATA_ROOT and moved.name.startswith("sandbox-postgres-") and data_folder(wanted) == moved
    assert stat.S_IMODE(DATA_ROOT.stat().st_mode) == 0o711 and DATA_ROOT.stat().st_uid == 0
    assert data_folder(Path(tempfile.gettempdir()) / "open" / "postgres") == Path(tempfile.gettempdir()) / "open" / \
        "postgres"   # a place the server user can reach stays where asked
    server = LocalServer(bin_dir, moved, durable=True)
    try:
        server.start()
        with psycopg.connect(**server.database().connect_kwargs(), autocommit=True) as conn:
            assert conn.execute("SELECT current_setting('data_directory')").fetchone()[0] == str(moved / "data")
        assert server.data.stat().st_uid == pwd.getpwnam(SERVER_USER).pw_uid
    finally:
        server.destroy()
        shutil.rmtree(moved, ignore_errors=True)


def test_a_server_folder_given_inside_a_private_folder_is_refused_without_advising_to_open_it(private_checkout):
    folder, bin_dir = private_checkout

    with pytest.raises(PermissionError) as refused:
        LocalServer(bin_dir, folder / "mine").start()

    assert f"cannot enter {folder}" in str(refused.value) and "chmod" not in str(refused.value)
    assert str(DATA_ROOT) in str(refused.value)
