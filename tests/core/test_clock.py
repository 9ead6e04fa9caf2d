"""core/clock.py: when this host's clock may decide what is old enough to delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ubertruck_ops.core.clock import (
    DATABASE_SERVER,
    SCHEDULE_ALLOWANCE,
    TOLERANCE,
    ClockReading,
    disagreement,
    retention_hold,
    server_offset,
)
from ubertruck_ops.core.retention import BackupRecord, backups_to_delete

REAL = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def reading(host_ahead: timedelta, source: str = DATABASE_SERVER, round_trip: float = 0.01) -> ClockReading:
    host = REAL + host_ahead
    return ClockReading(source, host, host + timedelta(seconds=round_trip), REAL + timedelta(seconds=round_trip / 2))


def test_a_host_clock_45_days_ahead_of_the_database_server_holds_retention_and_says_by_how_much():
    hold = retention_hold([reading(timedelta(days=45))], REAL - timedelta(minutes=7), REAL + timedelta(days=45))
    assert hold.startswith("this host's clock is 45.0 days ahead of the database server's")
    assert "nothing was deleted by age" in hold and "timedatectl" in hold


def test_a_host_clock_behind_the_repository_beyond_the_tolerance_holds_too():
    problem = disagreement([reading(timedelta(0)), reading(-timedelta(minutes=6), "the repository (s3://b/p)")])
    assert problem.startswith("this host's clock is 6m 00s behind the repository (s3://b/p)'s")


def test_clocks_within_the_tolerance_or_the_round_trip_agree():
    assert disagreement([reading(TOLERANCE - timedelta(seconds=1)), reading(-TOLERANCE + timedelta(seconds=1))]) is None
    # The server answered somewhere inside a 3 s round trip: no difference can be measured.
    slow = ClockReading(DATABASE_SERVER, REAL, REAL + timedelta(seconds=3), REAL + timedelta(seconds=2))
    assert slow.ahead == timedelta(0) and server_offset([slow]) == timedelta(0)


def test_without_any_other_clock_read_nothing_is_deleted_by_age():
    assert "no other clock could be read" in retention_hold([], REAL - timedelta(days=1), REAL)


def test_agreeing_clocks_and_a_backup_from_last_night_let_retention_run():
    assert retention_hold([reading(timedelta(seconds=2))], REAL - timedelta(hours=24), REAL) is None
    assert retention_hold([reading(timedelta(0))], None, REAL) is None   # a first backup has nothing to delete


def test_when_every_clock_jumped_together_a_newest_backup_older_than_the_schedule_allows_holds():
    # The database runs on the backup host and the repository is a local folder: all agree, all 45 days ahead.
    hold = retention_hold([reading(timedelta(0))], REAL - timedelta(days=45, minutes=7), REAL)
    assert "the newest backup before this run finished 45.0 days ago" in hold
    assert "longer than the schedule allows (36h 00m)" in hold and "Nothing was deleted by age" in hold


def test_manifests_are_dated_by_the_database_servers_clock_not_a_host_clock_running_ahead():
    readings = [reading(timedelta(days=45))]
    assert REAL + timedelta(days=45) + server_offset(readings) - REAL < timedelta(seconds=1)
    # The repository's clock never moves the date: only the database server's does.
    assert server_offset([reading(timedelta(days=45), "the repository (x)")]) == timedelta(0)


def _deleted(ages: list[float], host_ahead: timedelta, server_ahead: timedelta) -> set[str]:
    """What retention deletes of backups `ages` real days old, with this host's clock and the database
    server's (and the local repository's) that far ahead of the real time."""
    records = [BackupRecord(f"b{i}", REAL - timedelta(days=age)) for i, age in enumerate(sorted(ages, reverse=True))]
    host_now = REAL + host_ahead
    hold = retention_hold([reading(host_ahead - server_ahead)], max(r.finished_at for r in records), host_now)
    return set() if hold else backups_to_delete(records, host_now, keep_full_days=30)


@settings(max_examples=300, deadline=None)
@given(ages=st.lists(st.integers(1, 2990).map(lambda n: n / 100), min_size=1, max_size=30),
       jump=st.integers(0, 400 * 24).map(lambda h: timedelta(hours=h)))
def test_with_the_database_servers_clock_right_no_jump_ahead_lets_retention_delete_a_backup_younger_than_its_window(
        ages, jump):
    assert not _deleted(ages, jump, timedelta(0))


@settings(max_examples=300, deadline=None)
@given(ages=st.lists(st.integers(1, 2990).map(lambda n: n / 100), min_size=1, max_size=30),
       jump=st.integers(int(SCHEDULE_ALLOWANCE.total_seconds() // 3600) + 1, 400 * 24).map(lambda h: timedelta(hours=h)))
def test_when_every_clock_jumped_together_beyond_the_schedules_allowance_nothing_goes(ages, jump):
    assert not _deleted(ages, jump, jump)


def test_a_jump_of_every_clock_within_the_allowance_is_indistinguishable_from_a_late_run():
    """The limit, stated: with all clocks on one jumped machine, a jump the schedule could explain (here 30 h
    after a backup 1 h old) passes; ages are then at most that much off. An independent clock catches it."""
    assert _deleted([29.5, 0.04], timedelta(hours=30), timedelta(hours=30)) == {"b0"}
    assert not _deleted([29.5, 0.04], timedelta(hours=30), timedelta(0))


def test_the_schedule_allowance_lets_one_late_night_through():
    assert SCHEDULE_ALLOWANCE >= timedelta(hours=24) + timedelta(hours=6)


def test_a_target_time_with_an_offset_is_read_as_that_moment():
    from ubertruck_ops.core.clock import parse_target_time

    assert parse_target_time("2026-11-24T17:00:00+05:30") == datetime(2026, 11, 24, 11, 30, tzinfo=UTC)
    assert parse_target_time("2026-11-24T11:30:00Z") == datetime(2026, 11, 24, 11, 30, tzinfo=UTC)
    assert parse_target_time(None) is None and parse_target_time("") is None


def test_a_target_time_without_an_offset_is_refused_naming_an_india_time_example():
    import pytest

    from ubertruck_ops.core.clock import parse_target_time

    with pytest.raises(ValueError, match=r"has no offset, so it could be India time or UTC \(5.5 hours apart\): add "
                                         r"one, e.g. 2026-11-24T17:00:00\+05:30 for India time or "
                                         r"2026-11-24T17:00:00Z for UTC"):
        parse_target_time("2026-11-24T17:00:00")
    with pytest.raises(ValueError, match=r"is not ISO 8601 with an offset, e.g. 2026-11-24T17:00:00\+05:30"):
        parse_target_time("yesterday at five")

