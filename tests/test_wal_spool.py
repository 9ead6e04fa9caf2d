"""The WAL archiver's spool on a real filesystem: private, ours alone, one archiver at a time, and
finished segments moved (never copied, never lost) from pg_receivewal's folder to the queue."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ubertruck_ops.tasks.wal_spool import ArchiverRefused, Spool, spool_path

SEG = ["000000010000000000000005", "000000010000000000000006", "000000010000000000000007"]


def opened(root: Path) -> Spool:
    return Spool(root).open()


def finish(spool: Spool, name: str, data: bytes = b"wal") -> None:
    """What pg_receivewal does when it finishes a segment: a writable file under its final name."""
    path = spool.incoming / name
    path.write_bytes(data)
    path.chmod(0o600)


def test_a_new_spool_is_private_and_found_again_with_what_it_held(tmp_path):
    root = tmp_path / "state" / "production" / "wal-spool-ubertruck_wal"
    spool = opened(root)
    finish(spool, SEG[0])
    spool.collect()
    spool.close()
    assert [stat.S_IMODE(p.stat().st_mode) for p in (root, spool.incoming, spool.ready_dir)] == [0o700] * 3
    assert opened(root).ready() == [SEG[0]]        # a new start drains what the last one left


def test_finished_segments_move_to_the_queue_and_the_newest_stays_as_pg_receivewals_marker(tmp_path):
    spool = opened(tmp_path / "spool")
    for name in SEG:
        finish(spool, name)
    (spool.incoming / "000000010000000000000008.partial").write_bytes(b"half")
    assert spool.collect() == SEG and spool.ready() == SEG
    assert sorted(os.listdir(spool.incoming)) == [SEG[2], "000000010000000000000008.partial"]
    assert os.stat(spool.incoming / SEG[2]).st_ino == os.stat(spool.ready_dir / SEG[2]).st_ino   # a link, no copy
    for name in SEG:
        spool.remove(name)
    assert spool.collect() == [] and spool.ready() == []      # the marker is not queued again
    assert spool.marker() == SEG[2] and spool.partial() == "000000010000000000000008"
    assert spool.set_aside_partial() == "000000010000000000000008"
    assert spool.ready() == ["000000010000000000000008.partial"] and spool.partial() is None


def test_a_second_archiver_on_the_same_spool_is_refused_naming_the_first(tmp_path):
    first = opened(tmp_path / "spool")
    with pytest.raises(ArchiverRefused, match=f"another wal-archive \\(pid {os.getpid()} on "):
        opened(tmp_path / "spool")
    first.close()
    opened(tmp_path / "spool").close()          # free again once the first let go


def test_a_spool_open_to_others_is_refused(tmp_path):
    root = tmp_path / "spool"
    opened(root).close()
    root.chmod(0o755)
    with pytest.raises(ArchiverRefused, match="open to others \\(mode 0755\\)"):
        opened(root)


def test_a_spool_that_is_a_symbolic_link_is_refused(tmp_path):
    elsewhere = tmp_path / "someone-elses"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "spool").symlink_to(elsewhere)
    with pytest.raises(ArchiverRefused, match="is a symbolic link"):
        opened(tmp_path / "spool")
    assert list(elsewhere.iterdir()) == []      # nothing made in there either


def test_a_spool_owned_by_another_user_is_refused(tmp_path):
    root = tmp_path / "spool"
    opened(root).close()
    os.chown(root / "ready", 65534, 65534)      # nobody: what a hostile local user would leave
    with pytest.raises(ArchiverRefused, match="owned by uid 65534"):
        opened(root)


def test_a_symbolic_link_planted_among_the_segments_is_refused_not_archived(tmp_path):
    root = tmp_path / "spool"
    opened(root).close()
    (root / "ready" / SEG[0]).symlink_to("/etc/shadow")
    with pytest.raises(ArchiverRefused, match="is a symbolic link"):
        opened(root)


def test_a_spool_in_a_folder_others_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ArchiverRefused, match="writable by others"):
        opened(shared / "spool")


def test_the_slot_name_becomes_a_path_only_when_postgresql_would_take_it(monkeypatch, tmp_path):
    monkeypatch.setenv("UBERTRUCK_STATE_DIR", str(tmp_path))
    assert spool_path("production", "ubertruck_wal") == tmp_path / "production" / "wal-spool-ubertruck_wal"
    with pytest.raises(ValueError, match="lowercase letters, digits and underscores"):
        spool_path("production", "../../etc")
