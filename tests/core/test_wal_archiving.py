"""core/wal_archiving.py: what the WAL archiver does about its slot, holes, backoff, Slack and its switch."""

from __future__ import annotations

from ubertruck_ops.core.wal_archiving import (
    ArchiveHealth,
    Hole,
    SlotState,
    backoff,
    newest_segment,
    plan_resume,
    plan_slot,
)

MIB16 = 16 << 20


def seg(number: int, timeline: int = 1) -> str:
    return f"{timeline:08X}{number >> 8:08X}{number & 0xFF:08X}"


def test_a_free_slot_is_streamed_from_and_a_missing_one_is_created():
    assert plan_slot(SlotState(True, wal_status="reserved", restart_segment=seg(5)), "ubertruck_wal").action == "stream"
    created = plan_slot(SlotState(False), "ubertruck_wal")
    assert created.action == "create" and "ubertruck_wal does not exist" in created.message


def test_an_invalidated_slot_is_dropped_and_created_anew():
    plan = plan_slot(SlotState(True, wal_status="lost"), "ubertruck_wal")
    assert plan.action == "recreate" and "max_slot_wal_keep_size" in plan.message


def test_a_slot_another_walsender_streams_from_is_refused_naming_the_pid_and_its_client():
    slot = SlotState(True, active_pid=4242, wal_status="reserved", holder="client 10.0.0.9, application_name pg_receivewal")
    plan = plan_slot(slot, "ubertruck_wal", own_walsender=17)
    assert plan.action == "refuse"
    assert "ubertruck_wal" in plan.message and "walsender pid 4242" in plan.message and "10.0.0.9" in plan.message
    # even an invalidated slot someone still holds is theirs to let go
    assert plan_slot(SlotState(True, active_pid=4242, wal_status="lost"), "ubertruck_wal").action == "refuse"


def test_our_own_walsender_still_on_the_slot_is_waited_for_not_refused():
    assert plan_slot(SlotState(True, active_pid=17), "ubertruck_wal", own_walsender=17).action == "wait"


def test_a_logical_slot_of_the_same_name_is_refused():
    plan = plan_slot(SlotState(True, slot_type="logical"), "ubertruck_wal")
    assert plan.action == "refuse" and "logical" in plan.message


def test_resuming_after_the_newest_kept_segment_leaves_no_hole():
    # the slot keeps from the segment after the newest archived one: pg_receivewal starts there
    assert plan_resume(seg(9), None, seg(9), seg(10), seg(10), MIB16).hole is None
    # the slot lags (a finished segment not yet confirmed): streamed again, no hole
    assert plan_resume(seg(9), seg(8), seg(7), seg(8), seg(8), MIB16).hole is None
    # nothing archived yet: nothing to miss
    assert plan_resume(None, None, None, seg(40), seg(40), MIB16).hole is None


def test_a_slot_that_restarts_past_the_newest_kept_segment_names_the_hole_between():
    resume = plan_resume(seg(9), None, None, seg(14), seg(14), MIB16)
    assert resume.hole == Hole(seg(10), seg(13), 4)
    assert resume.hole.describe() == f"segments {seg(10)} to {seg(13)} (4 segments)"
    assert plan_resume(seg(9), None, None, seg(11), seg(11), MIB16).hole.describe() == f"segment {seg(10)}"


def test_a_partial_segment_the_server_no_longer_keeps_is_set_aside_and_counted_in_the_hole():
    resume = plan_resume(seg(9), seg(10), seg(9), seg(14), seg(14), MIB16)
    assert resume.set_aside_partial and resume.drop_marker
    assert resume.hole == Hole(seg(10), seg(13), 4)
    # one the server still keeps is resumed: pg_receivewal starts it again from its beginning
    kept = plan_resume(seg(9), seg(10), seg(9), seg(10), seg(10), MIB16)
    assert not kept.set_aside_partial and not kept.drop_marker and kept.hole is None


def test_a_marker_older_than_the_slot_is_dropped_so_pg_receivewal_starts_at_the_slot():
    resume = plan_resume(seg(9), None, seg(9), seg(12), seg(12), MIB16)
    assert resume.drop_marker and resume.hole == Hole(seg(10), seg(11), 2)


def test_before_postgresql_15_pg_receivewal_starts_at_the_current_segment_so_the_hole_reaches_it():
    resume = plan_resume(seg(9), None, None, seg(12), seg(20), MIB16)
    assert resume.hole == Hole(seg(10), seg(19), 10)
    # with a usable marker the current position does not matter
    assert plan_resume(seg(9), None, seg(9), seg(10), seg(20), MIB16).hole is None


def test_the_newest_segment_ignores_history_and_partial_files_and_orders_timelines():
    assert newest_segment([seg(3), "00000002.history", seg(9) + ".partial", seg(2, timeline=2)], MIB16) == seg(2, 2)
    assert newest_segment(["00000002.history"], MIB16) is None


def test_backoff_doubles_from_one_second_to_a_minute():
    waits, wait = [], None
    for _ in range(9):
        wait = backoff(wait)
        waits.append(wait)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def _kinds(signals):
    return [s[1] if s[0] == "ping" else "notice: " + s[1]["text"] for s in signals]


def test_the_switch_hears_start_then_success_at_most_once_a_minute_while_receiving():
    health = ArchiveHealth("production", "ubertruck_wal", "/var/spool")
    assert _kinds(health.started(0)) == ["start"]
    assert health.tick(5) == []                          # not receiving yet, within the grace
    health.stream_up(6)
    assert _kinds(health.tick(6)) == ["success"]
    assert health.tick(30) == [] and health.tick(65) == []
    assert _kinds(health.tick(66.5)) == ["success"]


def test_a_failing_repository_posts_once_pings_fail_and_posts_once_more_when_caught_up():
    health = ArchiveHealth("production", "ubertruck_wal", "/var/spool")
    health.started(0)
    health.stream_up(1)
    health.tick(1)
    first = health.push_failed(10, "S3 answered 503 SlowDown", 3)
    assert _kinds(first)[1] == "fail" and "WAL archiving is failing: S3 answered 503 SlowDown" in _kinds(first)[0]
    assert "/var/spool" in str(first[0][1])
    assert health.push_failed(12, "S3 answered 503 SlowDown", 4) == []      # one notice, not one per attempt
    assert health.tick(40) == []                                            # /fail already sent this minute
    assert _kinds(health.tick(71)) == ["fail"] and "503 SlowDown" in health.tick(200)[0][2]
    for name in (seg(1), seg(2), seg(3), seg(4)):
        health.pushed(name)
    caught = health.drained(250)
    assert "WAL archive caught up after 4m" in caught[0][1]["text"] and ": 4" in str(caught[0][1])
    assert _kinds(health.tick(251)) == ["success"] and health.drained(260) == []


def test_a_refused_segment_is_critical_once_and_keeps_the_switch_failing():
    health = ArchiveHealth("production", "ubertruck_wal", "/var/spool")
    health.started(0)
    health.stream_up(1)
    refused = health.push_refused(5, seg(7), f"{seg(7)} is already archived with different content")
    assert "CRITICAL: WAL segment" in refused[0][1]["text"] and _kinds(refused)[1] == "fail"
    assert health.push_refused(9, seg(7), "again") == []
    assert _kinds(health.tick(70)) == ["fail"]
    health.pushed(seg(7))
    assert _kinds(health.tick(71)) == ["success"]


def test_a_hole_is_a_critical_notice_and_an_immediate_fail_ping_naming_the_segments():
    health = ArchiveHealth("production", "ubertruck_wal", "/var/spool")
    health.started(0)
    signals = health.hole(3, Hole(seg(10), seg(13), 4), "replication slot ubertruck_wal was invalidated", seg(10))
    text = str(signals[0][1])
    assert "CRITICAL: the WAL archive has a hole" in signals[0][1]["text"]
    assert f"segments {seg(10)} to {seg(13)} (4 segments)" in text and f"{seg(10)}.partial" in text
    assert "force_full=true" in text
    assert signals[1][:2] == ("ping", "fail") and seg(10) in signals[1][2]


def test_pg_receivewal_away_longer_than_the_grace_posts_once_and_once_more_when_back():
    health = ArchiveHealth("production", "ubertruck_wal", "/var/spool", stream_grace=30)
    health.started(0)
    health.stream_up(1)
    health.tick(1)
    assert health.stream_down(10, "server closed the connection") == [] and health.tick(20) == []
    down = health.tick(41)
    assert "has not received WAL for 31.0 s" in down[0][1]["text"] and _kinds(down)[1] == "fail"
    assert "server closed the connection" in down[1][2]
    assert [k for k in _kinds(health.tick(50)) if k.startswith("notice")] == []
    back = health.stream_up(60)
    assert "receives WAL again" in back[0][1]["text"]
    assert _kinds(health.tick(60)) == ["success"]


def test_nothing_the_archiver_posts_or_pings_carries_a_url():
    health = ArchiveHealth("production", "ubertruck_wal", "/var/spool")
    signals = health.started(0) + health.push_failed(1, "S3 answered 503 SlowDown", 2) + health.tick(100)
    assert "http" not in str(signals)


def test_a_spool_ahead_of_the_server_came_from_another_cluster_and_is_not_resumed_from():
    # the database was rebuilt: its WAL starts over, the spool still holds the old cluster's segments
    resume = plan_resume(seg(90), seg(91), seg(90), seg(3), seg(3), MIB16, current=seg(4))
    assert resume.ahead and resume.set_aside_partial and resume.drop_marker and resume.hole is None
    assert not plan_resume(seg(9), seg(10), seg(9), seg(10), seg(10), MIB16, current=seg(10)).ahead
