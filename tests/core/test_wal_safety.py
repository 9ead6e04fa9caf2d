"""Our replication slot and the WAL archive's lag, judged (core/wal_safety.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ubertruck_ops.core.checks import CRITICAL, OK, WARN
from ubertruck_ops.core.wal_safety import (
    MIB,
    SlotFacts,
    archive_lag,
    keep_size_verdict,
    lag_check_due,
    lost_range,
    newest_archived,
    recommended_keep_size_mib,
    slot_verdict,
)

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
CURRENT = "000000010000000300000010"


def slot(**facts) -> SlotFacts:
    base = {"slot": "ubertruck_wal", "exists": True, "current_segment": CURRENT, "active": True, "active_pid": 4242,
            "wal_status": "reserved", "restart_lsn": "3/F000000", "retained_bytes": 20 * MIB, "keep_size_mib": 8192,
            "safe_wal_size": 8000 * MIB}
    return SlotFacts(**{**base, **facts})


def judge(facts: SlotFacts, archives_wal: bool = True, newest: str | None = None):
    return slot_verdict(facts, environment="production", archives_wal=archives_wal, warn_mib=1024, critical_mib=4096,
                        newest_archived=newest)


def test_a_streaming_slot_with_little_retained_wal_is_ok_and_names_its_consumer():
    result = judge(slot())
    assert result.status == OK and "20.0 MiB" in result.detail and "pid 4242" in result.detail


def test_a_slot_without_consumer_is_high_and_says_to_start_the_archiver_or_drop_the_slot():
    result = judge(slot(active=False, active_pid=None))
    assert (result.status, result.severity) == (WARN, "high")
    assert "no consumer" in result.detail and "since 3/F000000" in result.detail
    assert "ubertruck-ops wal-archive --environment production" in result.detail
    assert "systemctl start ubertruck-ops-wal-archive-production.service" in result.detail
    assert "SELECT pg_drop_replication_slot('ubertruck_wal');" in result.detail


def test_retained_wal_past_the_thresholds_is_high_then_critical_naming_the_amount():
    high = judge(slot(retained_bytes=1500 * MIB))
    assert (high.status, high.severity) == (WARN, "high") and "1.5 GiB" in high.detail
    critical = judge(slot(retained_bytes=5000 * MIB, active=False))
    assert critical.status == CRITICAL and "retains 4.9 GiB of WAL" in critical.detail
    assert "no consumer" in critical.detail and "pg_drop_replication_slot" in critical.detail


def test_a_slot_about_to_lose_its_wal_is_critical_and_one_past_half_its_allowance_high():
    assert judge(slot(wal_status="unreserved", safe_wal_size=-MIB)).status == CRITICAL
    half = judge(slot(keep_size_mib=32, retained_bytes=20 * MIB, safe_wal_size=12 * MIB))
    assert (half.status, half.severity) == (WARN, "high") and "12.0 MiB more" in half.detail


def test_a_lost_slot_is_critical_and_names_the_hole_from_the_newest_archived_segment():
    facts = slot(wal_status="lost", restart_lsn=None, retained_bytes=None, safe_wal_size=None, active=False)
    result = judge(facts, newest="00000001000000030000000A")
    assert result.status == CRITICAL
    assert "segments 00000001000000030000000B to 00000001000000030000000F (at most) are missing" in result.detail
    assert "force_full=true" in result.detail and "pg_drop_replication_slot('ubertruck_wal')" in result.detail
    unknown = judge(facts)
    assert unknown.status == CRITICAL and "up to 00000001000000030000000F" in unknown.detail
    one = judge(facts, newest="00000001000000030000000E")
    assert "segment 00000001000000030000000F is missing from the archive" in one.detail


def test_the_hole_of_a_lost_slot_that_kept_its_restart_lsn_starts_there():
    facts = slot(wal_status="lost", restart_lsn="3/C000010")
    assert lost_range(facts, "00000001000000030000000A") == ("00000001000000030000000C", "00000001000000030000000F")


def test_no_slot_is_high_only_where_the_tier_archives_wal():
    missing = SlotFacts(slot="ubertruck_wal", exists=False, current_segment=CURRENT)
    assert judge(missing).severity == "high" and "wal-archive" in judge(missing).detail
    assert judge(missing, archives_wal=False).status == OK


def test_an_unlimited_max_slot_wal_keep_size_is_a_low_warning_naming_the_setting_to_use():
    result = keep_size_verdict(slot(keep_size_mib=-1), archives_wal=True, critical_mib=4096)
    assert (result.status, result.severity) == (WARN, "low")
    assert "ALTER SYSTEM SET max_slot_wal_keep_size = '8GB'; SELECT pg_reload_conf();" in result.detail
    assert keep_size_verdict(slot(), archives_wal=True, critical_mib=4096).status == OK
    no_slot = SlotFacts(slot="ubertruck_wal", exists=False, current_segment=CURRENT)
    assert keep_size_verdict(no_slot, archives_wal=False, critical_mib=4096) is None
    assert recommended_keep_size_mib(100) == 200


def archive(*names_and_ages: tuple[str, float]) -> dict:
    return {name: NOW - timedelta(seconds=age) for name, age in names_and_ages}


def lag(archived: dict, current: str = CURRENT):
    return archive_lag(current, archived, NOW, 16 * MIB, environment="production", critical_seconds=600,
                       critical_segments=64)


def test_an_archive_one_segment_behind_the_one_being_written_is_not_behind_however_old():
    assert lag(archive(("00000001000000030000000F", 86400))).status == OK


def test_an_archiver_that_stopped_is_critical_by_time_and_by_segments():
    stale = lag(archive(("00000001000000030000000D", 601)))
    assert stale.status == CRITICAL and "2 finished segment(s)" in stale.detail
    assert "newest archived 00000001000000030000000D" in stale.detail and "wal-archive" in stale.detail
    fresh_but_far = lag(archive(("000000010000000200000010", 5)))
    assert fresh_but_far.status == CRITICAL and "255 finished segment(s)" in fresh_but_far.detail
    assert lag(archive(("00000001000000030000000D", 30))).status == OK      # 2 waiting, archived 30 s ago


def test_nothing_archived_is_critical():
    assert lag({}).status == CRITICAL and "no WAL segment in the archive" in lag({}).detail


def test_the_lag_follows_timelines_and_ignores_history_files_and_later_timelines():
    after_failover = "000000020000000300000010"
    archived = archive(("00000001000000030000000F", 10), ("00000002.history", 1), ("000000030000000400000000", 1))
    assert newest_archived(archived, after_failover, 16 * MIB)[0] == "00000001000000030000000F"
    assert lag(archived, after_failover).status == OK


def test_watch_lists_the_archive_at_once_then_at_most_every_period():
    assert lag_check_due(None, 5.0) and not lag_check_due(5.0, 64.9) and lag_check_due(5.0, 65.0)
    assert lag_check_due(0.0, 2.0, period=2.0)
