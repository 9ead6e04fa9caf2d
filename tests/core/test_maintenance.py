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

