"""core/scratch.py: a drill sweeps only leftovers whose owner is gone, and stops only a PostgreSQL that
really runs on that leftover's data folder."""

from __future__ import annotations

from ubertruck_ops.core.scratch import KEEP, SWEEP, UNKNOWN, leftover_verdict, owner_record, postmaster_to_stop

BOOT = "5b1c8e3e-0a9d-4a51-9d0e-2a6f1c3d4e5f"


def test_a_folder_whose_owner_lives_is_kept_and_one_whose_owner_is_gone_is_swept():
    record = owner_record(4242, 123456, BOOT)
    assert leftover_verdict(record, BOOT, 123456) == KEEP
    assert leftover_verdict(record, BOOT, None) == SWEEP                 # no such process
    assert leftover_verdict(record, BOOT, 999999) == SWEEP               # the pid now belongs to another process
    assert leftover_verdict(record, "another-boot", 123456) == SWEEP     # made before a reboot


def test_a_folder_without_a_readable_owner_record_is_left_alone():
    for record in (None, {}, [], "x", {"pid": "4242", "start": 1, "boot": BOOT}, {"pid": 4242, "boot": BOOT}):
        assert leftover_verdict(record, BOOT, 1) == UNKNOWN


def test_only_a_postgres_working_in_that_very_data_folder_is_stopped():
    data = "/tmp/ubertruck-pg-abc/data"
    pid_file = f"31337\n{data}\n1767225600\n5432\n/tmp/ubertruck-pg-abc/run\n127.0.0.1\n  1234  5678\nready   \n"
    exe = "/opt/venv/lib/python3.11/site-packages/postgresql/bin/postgres"
    assert postmaster_to_stop(pid_file, data, data, exe, data) == 31337
    assert postmaster_to_stop(pid_file, "/private" + data, data, exe, data) == 31337    # made through a symlink
    assert postmaster_to_stop(pid_file, data, data, "/usr/bin/sleep", data) is None     # the pid was reused
    assert postmaster_to_stop(pid_file, data, data, exe, "/tmp/other/data") is None      # another cluster's server
    assert postmaster_to_stop(pid_file, data, data, None, None) is None                  # no such process
    assert postmaster_to_stop(pid_file.replace(data, "/srv/prod/data"), data, data, exe, data) is None
    assert postmaster_to_stop("1\n" + data + "\n", data, data, exe, data) is None        # never init
    assert postmaster_to_stop(None, data, data, exe, data) is None
    assert postmaster_to_stop("garbage", data, data, exe, data) is None
