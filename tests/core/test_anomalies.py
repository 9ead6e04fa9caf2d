from datetime import datetime

from ubertruck_ops.core.anomalies import BackupFacts, backup_anomalies


def facts(backup_id: str, size: int = 1_000_000, seconds: float = 60, **rows: int) -> BackupFacts:
    return BackupFacts(backup_id, size, seconds, rows or {"core.bookings": 10_000, "core.users": 2_000})


RECENT = [facts(f"b{i}") for i in range(10)]


def test_a_backup_like_the_recent_ones_has_no_anomaly():
    assert backup_anomalies(facts("now", size=950_000, seconds=50), RECENT) == []


def test_nothing_to_compare_with_is_no_anomaly():
    assert backup_anomalies(facts("first", size=1), []) == []


def test_a_stored_size_down_more_than_30_percent_against_the_median_of_the_last_7_warns():
    found = backup_anomalies(facts("now", size=690_000), RECENT)
    assert len(found) == 1 and "31% below the median of the last 7 backups" in found[0], found
    assert backup_anomalies(facts("now", size=710_000), RECENT) == []


def test_the_median_ignores_one_odd_backup_among_the_last_seven():
    recent = RECENT[:-1] + [facts("odd", size=100)]
    assert backup_anomalies(facts("now", size=990_000), recent) == []


def test_a_table_that_lost_more_than_10_percent_of_its_rows_or_vanished_warns():
    lost = backup_anomalies(facts("now", **{"core.bookings": 8_900, "core.users": 2_000}), RECENT)
    assert lost == ["table core.bookings lost 11% of its rows (10,000 -> 8,900 since b9)"]
    gone = backup_anomalies(facts("now", **{"core.bookings": 10_000}), RECENT)
    assert gone == ["table core.users (2,000 rows in b9) is missing"]
    assert backup_anomalies(facts("now", **{"core.bookings": 9_100, "core.users": 2_000}), RECENT) == []


def test_small_tables_and_short_runs_are_noise():
    recent = [facts(f"b{i}", seconds=2, **{"core.flags": 10}) for i in range(7)]
    assert backup_anomalies(facts("now", seconds=0.1, **{"core.flags": 5}), recent) == []


def test_a_run_five_times_faster_than_usual_warns():
    found = backup_anomalies(facts("now", seconds=12), RECENT)
    assert len(found) == 1 and "5x faster than the median of the last 7" in found[0], found
    assert backup_anomalies(facts("now", seconds=13), RECENT) == []


def test_a_table_with_an_odd_name_is_not_reported_missing_when_the_next_backup_quotes_its_key():
    from types import SimpleNamespace

    def manifest(backup_id, rows, keys):
        return SimpleNamespace(backup_id=backup_id, objects=[], row_counts=rows, row_count_keys=keys,
                               finished=datetime(2026, 11, 24, 2, 5), started=datetime(2026, 11, 24, 2, 0))

    old = BackupFacts.of(manifest("old", {"core.users": 500, "a.b.c": 500, "Sales.Orders": 500}, "dotted"))
    new = BackupFacts.of(manifest("new", {"core.users": 500, '"a.b".c': 500, '"Sales"."Orders"': 500}, "quoted"))
    assert old.rows == {"core.users": 500}
    assert backup_anomalies(new, [old]) == []
