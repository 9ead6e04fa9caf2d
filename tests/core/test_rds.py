"""The RDS tier's pure decisions: names, expiry, leftover scratch instances, PITR verdicts,
restored row counts, and the refusal to restore over the source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ubertruck_ops.core import checks, rds
from ubertruck_ops.core.rds import InstanceInfo, SnapshotInfo

NOW = datetime(2026, 1, 24, 6, 30, tzinfo=UTC)
OURS = {rds.PROJECT_TAG: rds.SNAPSHOT_KIND}


def snap(name: str, days: float | None, instance: str = "ubertruck-prod", tags=OURS, kind: str = "manual",
         status: str = "available") -> SnapshotInfo:
    created = None if days is None else NOW - timedelta(days=days)
    return SnapshotInfo(name, instance, created, status, kind, dict(tags))


@pytest.mark.parametrize("name", ["a", "ubertruck-prod", "A1-b2", "x" * 63])
def test_valid_identifiers_pass(name):
    assert rds.validate_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "-abc", "abc-", "a--b", "a_b", "a.b", "x" * 64, "a b", None])
def test_invalid_identifiers_are_refused_with_the_rule(name):
    with pytest.raises(ValueError, match="letters, digits and single hyphens"):
        rds.validate_identifier(name)


def test_names_are_recognisable_valid_and_short_even_for_a_long_instance_id():
    assert rds.snapshot_name("Ubertruck-Prod", NOW) == "ubertruck-snap-ubertruck-prod-20260124-063000"
    assert rds.scratch_name("ubertruck-prod", NOW) == "ubertruck-drill-ubertruck-prod-20260124-063000"
    long_id = "a" + "-b" * 31   # 63 characters; cut where a hyphen would end the middle part
    for name in (rds.snapshot_name(long_id, NOW), rds.scratch_name(long_id, NOW)):
        assert len(name) <= 63 and rds.validate_identifier(name, "name") == name
        assert name.endswith("-20260124-063000") and "--" not in name


def test_expiry_deletes_our_old_snapshots_but_never_the_newest_nor_anyone_elses():
    snapshots = [
        snap("ubertruck-snap-p-1", 10), snap("ubertruck-snap-p-2", 8), snap("ubertruck-snap-p-3", 1),
        snap("ubertruck-snap-p-untagged", 30, tags={}),                     # name-alike, not ours
        snap("manual-by-dba", 30, tags=OURS),                               # our tag, not our name
        snap("ubertruck-snap-other", 30, instance="other-db"),              # another instance's
        snap("rds:ubertruck-prod-2026", 30, kind="automated"),              # RDS's own
        snap("ubertruck-snap-p-creating", None, status="creating"),         # age unknown
    ]
    assert rds.snapshots_to_expire(snapshots, "ubertruck-prod", NOW, 7) == ["ubertruck-snap-p-1", "ubertruck-snap-p-2"]


def test_expiry_keeps_the_newest_even_when_every_snapshot_is_old():
    snapshots = [snap("ubertruck-snap-p-1", 40), snap("ubertruck-snap-p-2", 20)]
    assert rds.snapshots_to_expire(snapshots, "ubertruck-prod", NOW, 7) == ["ubertruck-snap-p-1"]
    assert rds.newest_snapshot(snapshots, "UBERTRUCK-PROD").snapshot_id == "ubertruck-snap-p-2"
    assert rds.snapshots_to_expire([], "ubertruck-prod", NOW, 7) == []


def test_leftover_scratch_instances_are_ours_old_and_never_the_source():
    tags = {rds.PROJECT_TAG: rds.SCRATCH_KIND}
    old, young = NOW - timedelta(hours=30), NOW - timedelta(hours=1)
    instances = [InstanceInfo("ubertruck-drill-p-1", "available", old, tags),
                 InstanceInfo("ubertruck-drill-p-2", "available", young, tags),       # a drill running now
                 InstanceInfo("ubertruck-drill-p-3", "available", old, {}),            # untagged name-alike
                 InstanceInfo("ubertruck-drill-p-4", "deleting", old, tags),
                 InstanceInfo("ubertruck-drill-src", "available", old, tags)]          # tagged, but the source
    assert rds.leftover_scratch(instances, "ubertruck-drill-src", NOW, 6) == ["ubertruck-drill-p-1"]


def test_restoring_over_the_source_is_refused_whatever_its_case():
    assert rds.refuse_restore_over_source("ubertruck-restored", "ubertruck-prod") == "ubertruck-restored"
    with pytest.raises(rds.RestoreOverSource, match="it is the source"):
        rds.refuse_restore_over_source("Ubertruck-Prod", "ubertruck-prod")
    with pytest.raises(ValueError, match="rds_instance"):
        rds.refuse_restore_over_source("bad--name", "ubertruck-prod")


def verdicts(retention, age_minutes):
    latest = None if age_minutes is None else NOW - timedelta(minutes=age_minutes)
    return [(r.name, r.status) for r in rds.pitr_checks(retention, latest, NOW, 3, 15, 60)]


def test_pitr_retention_under_the_guides_three_days_is_critical():
    assert verdicts(7, 2)[0] == ("rds backup retention", checks.OK)
    assert verdicts(3, 2)[0] == ("rds backup retention", checks.OK)
    assert verdicts(2, 2)[0] == ("rds backup retention", checks.CRITICAL)
    [retention, _] = rds.pitr_checks(0, NOW, NOW, 3, 15, 60)
    assert retention.status == checks.CRITICAL and "automated backups are off" in retention.detail


def test_pitr_rpo_warns_past_15_minutes_and_is_critical_past_an_hour():
    assert verdicts(7, 5)[1] == ("rds point-in-time window", checks.OK)
    assert verdicts(7, 15)[1][1] == checks.OK
    assert verdicts(7, 16)[1][1] == checks.WARN
    assert verdicts(7, 61)[1][1] == checks.CRITICAL
    assert verdicts(7, None)[1][1] == checks.CRITICAL
    [_, rpo] = rds.pitr_checks(7, NOW - timedelta(minutes=20), NOW, 3, 15, 60)
    assert rpo.severity == "high" and "20.0 min old" in rpo.detail


def test_restored_instance_must_hold_every_manifest_table_with_at_least_its_rows():
    expected = {"core.users": 10, "booking.bookings": 5, "fleet.trucks": 3}
    assert rds.restored_shortfalls(expected, {"core.users": 12, "booking.bookings": 5, "fleet.trucks": 3,
                                              "public.extra": 1}) == []
    assert rds.restored_shortfalls(expected, {"core.users": 9, "booking.bookings": 5}) == [
        "core.users: expected at least 10 rows, restored 9",
        "fleet.trucks: in the manifest (3 rows), missing from the restored instance"]


def test_the_six_hourly_notice_names_the_kept_snapshot_and_what_is_wrong():
    results = rds.pitr_checks(2, NOW - timedelta(minutes=20), NOW, 3, 15, 60)
    notice = rds.six_hourly_notice("production", "ubertruck-snap-x", None, [], results, [])
    assert "FAILED a check" in notice["text"]
    body = notice["blocks"][0]["text"]["text"]
    assert "`ubertruck-snap-x` (kept)" in body and "critical: rds backup retention" in body
    assert "warn: rds point-in-time window" in body
    calm = rds.six_hourly_notice("production", "s", "eu-west-1", [], [results[1]], [])
    assert "with warnings" in calm["text"]
