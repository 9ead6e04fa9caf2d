"""core/physical.py: refusals, chain planning, chains, WAL arithmetic, WAL plans, gaps and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ubertruck_ops.core.manifest import Manifest
from ubertruck_ops.core.physical import (
    ChainBroken,
    ServerFacts,
    WalGap,
    contiguous_run,
    find_wal_gaps,
    parse_segment,
    plan_backup,
    plan_wal,
    replay_from,
    resolve_chain,
    segment_name,
    segment_of,
    wal_to_delete,
)
from ubertruck_ops.core.retention import BackupRecord, backups_to_delete

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


SEG = 16 << 20


GOOD = ServerFacts(180006, True, "replica", True, None, "7711", 1, SEG)


def manifest(backup_id: str, kind: str, parent: str | None, age_hours: float, start="0/2000028", end="0/2000120",
             timeline: int = 1, system: str = "7711") -> Manifest:
    finished = (NOW - timedelta(hours=age_hours)).isoformat()
    return Manifest(backup_id, kind, finished, finished, {"server_version": "180006"}, {}, {}, parent=parent,
                    physical={"start_lsn": start, "end_lsn": end, "timeline": timeline, "system_identifier": system,
                              "wal_segment_size": SEG})


def test_a_chain_starts_anew_when_missing_old_requested_or_on_another_cluster_or_timeline():
    base = manifest("b", "base", None, 24)
    age = timedelta(days=7)
    assert plan_backup(None, None, GOOD, NOW, age, False)[0] == "base"
    assert plan_backup(base, base, GOOD, NOW, age, True)[0] == "base"
    assert plan_backup(base, base, GOOD, NOW + timedelta(days=8), age, False)[1].startswith("the chain's base backup is older")
    assert "timeline 2" in plan_backup(base, base, ServerFacts(180006, True, "replica", True, None, "7711", 2, SEG),
                                       NOW, age, False)[1]
    assert "different cluster" in plan_backup(base, base, ServerFacts(180006, True, "replica", True, None, "99", 1, SEG),
                                              NOW, age, False)[1]
    assert plan_backup(base, base, GOOD, NOW, age, False) == ("incremental", "incremental on top of b")


def test_a_base_and_wal_chain_records_recovery_points_until_its_base_is_old_or_its_wal_large():
    base = manifest("b", "base", None, 24)
    age, limit = timedelta(days=7), 64 << 30
    plan = lambda **kw: plan_backup(base, base, GOOD, NOW, age, False, incrementals=False, max_wal_since_base=limit, **kw)
    assert plan(wal_since_base=1 << 30) == ("recovery-point", "recovery point on the chain of b (base and WAL)")
    kind, why = plan(wal_since_base=limit + 1)
    assert kind == "base" and "64.0 GiB" in why
    assert plan_backup(None, None, GOOD, NOW, age, False, incrementals=False)[0] == "base"
    assert plan_backup(base, base, GOOD, NOW + timedelta(days=8), age, False, incrementals=False)[0] == "base"


def test_chains_resolve_base_first_and_a_missing_link_is_named():
    chain = {m.backup_id: m for m in [manifest("b", "base", None, 3), manifest("i1", "incremental", "b", 2),
                                       manifest("i2", "incremental", "i1", 1)]}
    assert [m.backup_id for m in resolve_chain(chain, "i2")] == ["b", "i1", "i2"]
    del chain["i1"]
    with pytest.raises(ChainBroken, match="needs i1, which is missing"):
        resolve_chain(chain, "i2")


def test_wal_segment_arithmetic_matches_postgres_names():
    assert segment_of("0/7000080", SEG) == 7
    assert segment_name(1, 7, SEG) == "000000010000000000000007"
    assert segment_name(1, 0x100, SEG) == "000000010000000100000000"
    assert parse_segment("000000010000000100000000", SEG) == (1, 0x100)
    assert parse_segment("00000002.history", SEG) is None
    assert contiguous_run({3, 4, 5, 7}, 3) == 5 and contiguous_run({4}, 3) is None


def test_wal_plan_replays_to_the_target_and_names_a_gap():
    last = manifest("i", "incremental", "b", 1, end="0/5000100")
    archived = {segment_name(1, s, SEG): NOW - timedelta(minutes=60 - s) for s in (5, 6, 8, 9)}
    assert plan_wal(last, archived, None) == [segment_name(1, 5, SEG), segment_name(1, 6, SEG)]
    assert plan_wal(last, archived, NOW - timedelta(minutes=54.5)) == [segment_name(1, 5, SEG), segment_name(1, 6, SEG)]
    # Segment 5 was archived after the target but may end before it: 6 comes along too.
    assert plan_wal(last, archived, NOW - timedelta(minutes=55.5)) == [segment_name(1, 5, SEG), segment_name(1, 6, SEG)]
    with pytest.raises(WalGap, match="000000010000000000000007"):
        plan_wal(last, archived, NOW - timedelta(minutes=51.5))
    with pytest.raises(WalGap, match="before target_time"):
        plan_wal(last, archived, NOW + timedelta(minutes=5))


def test_wal_retention_keeps_recent_wal_and_what_kept_backups_need():
    old, new = NOW - timedelta(days=5), NOW - timedelta(hours=1)
    segments = {segment_name(1, s, SEG): old for s in range(1, 6)} | {segment_name(1, 6, SEG): new}
    doomed = wal_to_delete(segments, [(3, 4)], NOW, timedelta(days=3), SEG)
    assert doomed == [segment_name(1, 1, SEG), segment_name(1, 2, SEG), segment_name(1, 5, SEG)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=30), st.integers(0, 40))
def test_no_sequence_of_backups_and_clock_ticks_leaves_a_kept_backup_unrestorable(spec, ticks):
    """Backups taken in time order (each incremental on the previous one), then the clock moves on:
    every kept backup keeps its whole chain and the WAL its consistency needs."""
    records, ranges, now = [], {}, NOW + timedelta(days=ticks)
    for index, (hours_before, incremental) in enumerate(spec):
        parent = records[-1].backup_id if incremental and records else None
        finished = NOW - timedelta(days=len(spec) - index, hours=hours_before % 24)
        records.append(BackupRecord(f"b{index}", finished, parent))
        ranges[f"b{index}"] = (10 * index, 10 * index + 1)
    deleted = backups_to_delete(records, now, keep_full_days=30, keep_incremental_days=7)
    kept = {r.backup_id: r for r in records if r.backup_id not in deleted}
    assert kept, "the newest full backup always stays"
    protected = [ranges[b] for b in kept]
    segments = {segment_name(1, s, SEG): NOW - timedelta(days=40) for s in range(0, 10 * len(spec) + 2)}
    gone = {parse_segment(n, SEG)[1] for n in wal_to_delete(segments, protected, now, timedelta(days=3), SEG)}
    for backup_id, record in kept.items():
        assert record.parent is None or record.parent in kept
        low, high = ranges[backup_id]
        assert not ({low, high} & gone)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 24 * 14), min_size=1, max_size=20), st.integers(0, 24 * 3))
def test_wal_retention_keeps_every_segment_a_restore_into_the_window_replays(hours_ago, target_hours_ago):
    """Bases taken at any times (a base-and-WAL chain may be older than the 3-day WAL window): a restore
    to any moment of the window starts from the newest backup finished by then and replays every
    segment after it, so nothing from that backup's start on may go."""
    keep = timedelta(days=3)
    backups = [(NOW - timedelta(hours=h), 1000 - h) for h in hours_ago]    # older backups start earlier
    start = replay_from(backups, NOW, keep)
    target = NOW - timedelta(hours=target_hours_ago)
    usable = [first for finished, first in sorted(backups) if finished <= target]
    if usable:
        assert start <= usable[-1]
    assert start == min(first for _, first in backups) or any(f <= NOW - keep for f, _ in backups)
    assert replay_from([], NOW, keep) is None


def test_wal_gaps_are_the_missing_segments_between_the_chain_start_and_the_newest_archived():
    archived = {segment_name(1, s, SEG): NOW for s in (5, 6, 8, 11)} | {segment_name(2, 9, SEG): NOW,
                                                                       "00000002.history": NOW}
    assert find_wal_gaps(archived, 5, 1, SEG) == [segment_name(1, s, SEG) for s in (7, 9, 10)]
    assert find_wal_gaps(archived, 11, 1, SEG) == []
    assert find_wal_gaps(archived, 12, 1, SEG) == [], "nothing archived after the start yet: no gap to name"
    assert find_wal_gaps(archived, 3, 1, SEG) == [segment_name(1, s, SEG) for s in (3, 4, 7, 9, 10)]
