"""core/maintenance.py: which tables to vacuum, and reviews that say when they have nothing to go on."""

from __future__ import annotations

from ubertruck_ops.core.checks import ERROR
from ubertruck_ops.core.maintenance import capacity_planning, performance_review, tables_to_vacuum


def test_vacuum_picks_tables_over_either_threshold():
    stats = [{"table": "a.big", "live": 1_000_000, "dead": 20_000}, {"table": "a.small", "live": 100, "dead": 50},
             {"table": "a.clean", "live": 1000, "dead": 3}]
    assert tables_to_vacuum(stats, min_dead=10_000, min_ratio_pct=10) == ["a.big", "a.small"]


def test_reviews_say_when_they_have_nothing_to_go_on():
    import datetime as dt

    assert performance_review({}, dt.date(2026, 11, 30), 2).status == ERROR
    assert capacity_planning({"2026-11-01": {"disk used bytes": 1, "disk total bytes": 10}}).status == ERROR



def test_a_restore_drill_result_has_the_same_keys_in_every_mode():
    from ubertruck_ops.core.maintenance import DrillReport, drill_result

    logical = DrillReport("logical", "20261124T020000Z-logical-a1", True, 12.5, 3600.0, tables=6, rows=1000,
                          chain=["20261124T020000Z-logical-a1"])
    physical = DrillReport("physical", "20261124T060000Z-incremental-b2", True, 20.0, 30.0, tables=6, rows=1010,
                           chain=["20261124T000000Z-base-c3", "20261124T060000Z-incremental-b2"], wal_files=3)
    results = {mode: drill_result(mode, reports) for mode, reports in
               (("logical", [logical]), ("physical", [physical]), ("both", [logical, physical]))}
    assert {tuple(r) for r in results.values()} == {("mode", "passed", "logical", "physical", "rds")}
    assert results["logical"]["physical"] is None and results["physical"]["logical"] is None
    assert set(results["logical"]["logical"]) == set(results["physical"]["physical"])
    assert results["both"]["physical"]["wal_files"] == 3 and results["both"]["passed"]


def test_the_monthly_rows_are_one_per_drill_and_critical_when_the_drill_failed():
    from ubertruck_ops.core.checks import CRITICAL, OK
    from ubertruck_ops.core.maintenance import DrillReport, drill_checks, drill_result

    logical = DrillReport("logical", "L", True, 12.5, 3600.0, tables=6, rows=1000, chain=["L"])
    physical = DrillReport("physical", "P", True, 20.0, 30.0, tables=6, rows=1010, chain=["B", "P"], wal_files=3)
    both = drill_checks(drill_result("both", [logical, physical]))
    assert [(r.name, r.status, r.value) for r in both] == [("restore drill", OK, "L"),
                                                            ("physical restore drill", OK, "P")]
    assert both[0].detail == "6 tables, 1,000 rows; RTO 12.5 s"
    assert "chain of 2, 3 WAL file(s) replayed" in both[1].detail
    [failed] = drill_checks(None, "restore drill of L failed: booking.bookings: expected 5, restored 4")
    assert (failed.name, failed.status, failed.severity) == ("restore drill", CRITICAL, "critical")
    assert "booking.bookings" in failed.detail
    assert drill_checks(None)[0].detail == "the drill failed"


def test_a_drill_mode_names_its_drills_and_applicable_falls_back_to_what_the_repository_holds():
    from ubertruck_ops.core.maintenance import drills_of

    assert drills_of("logical") == ("logical",)
    assert drills_of("both") == ("logical", "physical")
    assert drills_of("rds") == ("rds",)
    assert drills_of("applicable", ("logical", "rds")) == ("logical", "rds")
    # The server could not be asked for its tier: the repository's chain decides.
    assert drills_of("applicable", None, has_chain=True) == ("logical", "physical")
    assert drills_of("applicable", None, has_chain=False) == ("logical",)


def test_vacuum_and_cache_clean_up_rows_say_what_was_done_or_that_nothing_was_needed():
    from ubertruck_ops.core.maintenance import cache_cleanup_result, vacuum_result

    done = vacuum_result(["a.big", "a.small"], 10_000, 10.0)
    assert (done.value, done.threshold, done.detail) == (2, "> 10000 dead or > 10.0%", "vacuumed: a.big, a.small")
    assert vacuum_result([], 10_000, 10.0).detail == "vacuumed: none needed"
    cleaned = cache_cleanup_result({"session:*": 3, "tmp:*": 0})
    assert (cleaned.value, cleaned.detail) == (3, "session:*: 3 key(s) removed, tmp:*: 0 key(s) removed")
    assert cache_cleanup_result({}).detail == "no patterns configured"
