"""core/placement.py: what the PostgreSQL server user (under root) can use, and where its binaries
and data go when it cannot reach them where they are."""

from __future__ import annotations

import hashlib
import stat

import pytest

from ubertruck_ops.core.names import shell_safe_path
from ubertruck_ops.core.placement import (
    BINARIES_ROOT,
    DATA_ROOT,
    binaries_folder,
    data_folder_for,
    usable_by_others,
)

DIR, FILE = stat.S_IFDIR, stat.S_IFREG


def test_others_pass_a_folder_with_o_x_and_read_a_file_with_o_r_and_run_it_only_with_o_x():
    assert usable_by_others(DIR | 0o711) and usable_by_others(DIR | 0o755)
    assert not usable_by_others(DIR | 0o700) and not usable_by_others(DIR | 0o774)     # /root, a Debian 12 home
    assert usable_by_others(FILE | 0o644) and usable_by_others(FILE | 0o755)
    assert not usable_by_others(FILE | 0o600)                # cloned under umask 077
    assert not usable_by_others(FILE | 0o754)                # an executable others may read but not run


def test_a_copy_of_the_binaries_is_named_by_version_and_digest_and_nothing_else():
    digest = hashlib.sha256(b"pginstall").hexdigest()
    assert binaries_folder("18.6", digest) == f"{BINARIES_ROOT}/pgsql-18.6-{digest[:16]}"
    for version, bad in (("18.6/../..", digest), ("18.6", "f" * 63), ("18.6", "../" + digest[3:]), ("", digest)):
        with pytest.raises(ValueError):
            binaries_folder(version, bad)


def test_a_data_folder_is_named_after_the_place_asked_for_stays_the_same_and_is_shell_safe():
    folder = data_folder_for("/root/ubertruck-ops/.sandbox/postgres")
    assert folder.startswith(f"{DATA_ROOT}/sandbox-postgres-") and len(folder.rsplit("-", 1)[1]) == 12
    assert data_folder_for("/root/ubertruck-ops/.sandbox/postgres") == folder
    assert data_folder_for("/home/ops/ubertruck-ops/.sandbox/postgres") != folder      # two checkouts, two folders
    odd = data_folder_for("/root/it's a $(sandbox)/pg data")
    assert shell_safe_path(odd, "server folder") == odd and odd.startswith(f"{DATA_ROOT}/it-s-a-sandbox-pg-data-")
    assert data_folder_for("/").startswith(f"{DATA_ROOT}/")
