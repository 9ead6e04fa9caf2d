"""core/retention.py: what retention deletes and what it must never delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ubertruck_ops.core.retention import BackupRecord, backups_to_delete, clock_behind, plan_retention, stale_incomplete

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def full(day: int) -> BackupRecord:
    return BackupRecord(f"full-{day}", NOW - timedelta(days=day))


def test_retention_deletes_full_backups_older_than_the_window():
    backups = [full(d) for d in (1, 10, 29, 31, 45)]
    assert backups_to_delete(backups, NOW, keep_full_days=30) == {"full-31", "full-45"}


def test_retention_never_deletes_the_newest_complete_full_backup_even_when_expired():
    assert backups_to_delete([full(40), full(50)], NOW, keep_full_days=30) == {"full-50"}


def test_of_two_expired_fulls_finishing_in_the_same_second_the_later_started_one_is_kept():
    same_second = NOW - timedelta(days=40)
    earlier = BackupRecord("20261015T020049Z-logical-ffffff", same_second)
    later = BackupRecord("20261015T020050Z-logical-000000", same_second)
    for listed in ([earlier, later], [later, earlier]):
        assert backups_to_delete(listed, NOW, keep_full_days=30) == {earlier.backup_id}


def test_retention_keeps_the_parents_of_kept_incrementals():
    base = full(40)
    inc1 = BackupRecord("inc-1", NOW - timedelta(days=5), parent="full-40")
    inc2 = BackupRecord("inc-2", NOW - timedelta(days=1), parent="inc-1")
    newer = full(2)
    assert backups_to_delete([base, inc1, inc2, newer], NOW, keep_full_days=30) == set()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 90), st.booleans()), min_size=1, max_size=25), st.integers(1, 60))
def test_retention_never_leaves_a_kept_backup_without_its_parents_nor_zero_fulls(spec, keep_days):
    records = []
    for index, (age, incremental) in enumerate(sorted(spec, key=lambda s: -s[0])):
        parent = records[-1].backup_id if incremental and records else None
        records.append(BackupRecord(f"b{index}", NOW - timedelta(days=age), parent))
    deleted = backups_to_delete(records, NOW, keep_days)
    kept = {r.backup_id: r for r in records if r.backup_id not in deleted}
    assert any(r.is_full for r in kept.values())
    for record in kept.values():
        assert record.parent is None or record.parent in kept


def test_incomplete_leftovers_go_only_after_the_grace_period():
    folders = {"a": NOW - timedelta(hours=30), "b": NOW - timedelta(hours=2), "c": NOW - timedelta(days=9)}
    assert stale_incomplete(folders, {"c"}, NOW, timedelta(hours=24)) == ["a"]


def test_retention_never_deletes_a_folder_whose_manifest_it_cannot_read_however_old():
    from ubertruck_ops.core.retention import plan_retention

    old, newer = "20261001T020000Z-logical-aaaaaa", "20261120T020000Z-logical-bbbbbb"
    unreadable, leftover, running = "20260901T020000Z-logical-cccccc", "20261002T020000Z-logical-dddddd", \
        "20261124T010000Z-logical-eeeeee"
    records = [BackupRecord(old, NOW - timedelta(days=54), kind="logical"),
               BackupRecord(newer, NOW - timedelta(days=4), kind="logical")]
    folders = {old: NOW - timedelta(days=54), newer: NOW - timedelta(days=4), unreadable: NOW - timedelta(days=84),
               leftover: NOW - timedelta(days=53), running: NOW - timedelta(hours=1)}
    plan = plan_retention(records, folders, {old, newer, unreadable}, {unreadable: "logical"}, NOW, 30,
                          timedelta(hours=24), hold=None)
    assert plan.expired == [old] and plan.leftovers == [leftover] and plan.unreadable == [unreadable]


def test_an_unreadable_incremental_keeps_every_physical_backup_before_it():
    from ubertruck_ops.core.retention import plan_retention

    base = BackupRecord("20261001T020000Z-base-aaaaaa", NOW - timedelta(days=54), kind="base")
    logical = BackupRecord("20261001T030000Z-logical-bbbbbb", NOW - timedelta(days=54), kind="logical")
    newest = BackupRecord("20261120T020000Z-base-cccccc", NOW - timedelta(days=4), kind="base")
    lost_link = "20261002T020000Z-incremental-dddddd"
    folders = {r.backup_id: r.finished_at for r in (base, logical, newest)} | {lost_link: NOW - timedelta(days=53)}
    plan = plan_retention([base, logical, newest], folders, set(folders), {lost_link: "incremental"}, NOW, 30,
                          timedelta(hours=24), hold=None)
    assert plan.expired == [logical.backup_id], "the base the unreadable incremental may build on must stay"


def test_a_backup_that_finished_before_the_newest_in_the_repository_says_the_clock_may_be_behind():

    others = [BackupRecord("20261124T010000Z-logical-aaaaaa", NOW - timedelta(hours=1)),
              BackupRecord("20261123T020000Z-logical-bbbbbb", NOW - timedelta(days=1))]
    mine = "20261124T000000Z-logical-cccccc"
    assert clock_behind(mine, NOW, others + [BackupRecord(mine, NOW)]) is None
    warning = clock_behind(mine, NOW - timedelta(hours=2), others)
    assert "is this host's clock behind?" in warning and "1h 00m before backup 20261124T010000Z-logical-aaaaaa" \
        in warning and "Nothing was deleted because of it" in warning


def test_while_the_clock_is_held_no_backup_goes_by_age_but_folders_without_a_manifest_still_do():
    old, newer, leftover = ("20261001T020000Z-logical-aaaaaa", "20261120T020000Z-logical-bbbbbb",
                            "20261002T020000Z-logical-dddddd")
    records = [BackupRecord(old, NOW - timedelta(days=54)), BackupRecord(newer, NOW - timedelta(days=4))]
    folders = {old: NOW - timedelta(days=54), newer: NOW - timedelta(days=4), leftover: NOW - timedelta(days=53)}
    plan = plan_retention(records, folders, {old, newer}, {}, NOW, 30, timedelta(hours=24), hold="clock ahead")
    assert plan.expired == [] and plan.would_expire == [old] and plan.held == "clock ahead"
    assert plan.leftovers == [leftover]
