"""core/reports.py: the artifacts' markdown says what a restore, a drill or a day did, in the shape
operators read every day."""

from __future__ import annotations

import datetime as dt

from ubertruck_ops.core import reports


def test_a_restore_report_names_the_target_counts_and_what_was_kept():
    text = reports.restore_report("20261124T020000Z-logical-a1", "database app on db:5432", 75.0,
                                  {"core.users": 7, "core.bookings": 1200}, "app_before_20261124", ["/srv/files/app"])
    assert text == ("# Restore of `20261124T020000Z-logical-a1`\n\n- target: database app on db:5432\n"
                    "- duration: 1m 15s\n- tables verified: 2, rows: 1,207\n"
                    "- previous database kept as: app_before_20261124\n- files extracted to: ['/srv/files/app']\n")
    new = reports.restore_report("x", "database app on db:5432", 1.0, {}, None, [])
    assert "- previous database kept as: none (target was new)\n- files extracted to: not requested\n" in new


def test_physical_and_rds_restore_reports_say_where_the_result_is():
    result = {"chain": ["base-1", "incr-2"], "wal_files": 4, "data_directory": "/srv/r/data", "port": 6543}
    running = reports.physical_restore_report(result, None, True, 3.0)
    assert "- chain: base-1 -> incr-2\n- target time: latest\n- WAL files replayed: 4\n" in running
    assert "- server: running on 127.0.0.1:6543\n" in running
    assert "- server: stopped\n" in reports.physical_restore_report(result, "2026-11-24T17:00:00+05:30", False, 3.0)
    rds = reports.rds_restore_report("restored-1", {"restored": "snap-1", "endpoint": "h:5432",
                                                    "row_counts": {"a": 1, "b": 2}, "duration_seconds": 61.0})
    assert rds.startswith("# RDS restore into `restored-1`\n\n- restored: `snap-1`\n- endpoint: h:5432\n")
    assert rds.endswith("- tables: 2, rows: 3\n- duration: 1m 01s\n- the source instance was not touched\n")


def test_a_drill_report_marks_every_table_whose_rows_differ_and_lists_the_findings():
    text = reports.drill_report("b1", False, 10.0, 3600.0, {"a": 1, "b": 5}, {"a": 1, "b": 6, "c": 2},
                                ["row counts differ"])
    assert text.startswith("# Restore drill: FAILED\n\n- backup: `b1`\n")
    assert "| a | 1 | 1 | ok |\n| b | 6 | 5 | MISMATCH |\n| c | 2 | - | MISMATCH |\n" in text
    assert text.endswith("Findings:\n- row counts differ\n")
    assert reports.drill_report("b1", True, 1.0, 1.0, {}, {}, []).endswith("Findings:\n- none\n")
    physical = reports.physical_drill_report(False, "(not restored)", None, 2.0, 0.0, ["step 'x': boom"])
    assert physical.startswith("# Physical restore drill: FAILED\n\n- chain: (not restored)\n- WAL files replayed: -\n")
    assert physical.endswith("- finding: step 'x': boom\n")


def test_the_status_report_shows_yesterday_today_and_the_change_with_the_chart_inline():
    figures = {"bookings": (100.0, 150.0), "database MiB": (None, 2048.0)}
    text = reports.status_report(dt.date(2026, 11, 24), dt.date(2026, 11, 23), figures, "QUJD", "s3://b/x.png")
    assert text.startswith("## Daily status report 2026-11-24 (against 2026-11-23)\n\n"
                           "| metric | 2026-11-23 | 2026-11-24 | change |\n")
    assert "| bookings | 100.0 | 150.0 | +50.0% |\n| database MiB | None | 2,048.0 |" in text
    assert "![day over day](data:image/png;base64,QUJD)\n\nChart stored at s3://b/x.png.\n" in text
    assert reports.charted_metrics(figures) == ["bookings"]
    assert reports.chart_note("s3://b/x.png") == ":bar_chart: daily chart: s3://b/x.png"


def test_a_checklist_report_lists_every_check_worst_first_and_the_slack_summary_only_what_is_not_ok():
    from ubertruck_ops.core import checks

    results = [checks.ok("disk /", 40.0, "< 80%", "40% used"), checks.critical("services", "down", None, "503"),
               checks.warn("cpu", 90.0, "> 85%", "90% busy", severity="high")]
    text = reports.checklist_report("Morning checklist (9:00)", results, "body text")
    assert text.startswith("# Morning checklist (9:00)\n\n")
    assert text.index("| services |") < text.index("| cpu |") < text.index("| disk / |")
    assert text.endswith("\n\nbody text\n")
    summary = reports.checklist_slack_summary("Morning checklist", "production", results, ["extra line"])
    assert summary["text"].startswith(":red_circle: [production] Morning checklist: ")
    shown = summary["blocks"][0]["text"]["text"]
    assert "*services*: 503" in shown and "*cpu*: 90% busy" in shown and "disk /" not in shown
    assert shown.endswith("extra line")


def test_a_six_hourly_report_says_whether_it_stored_a_backup_or_proved_a_recovery_point():
    wal = {"start_lsn": "0/1000000", "end_lsn": "0/2000000", "timeline": 1}
    base = {"why": "due", "chain_base": "base-1", "wal": wal, "duration_seconds": 5.0, "wal_gaps": []}
    title, text = reports.six_hourly_report("native-incremental", "PostgreSQL 17", {
        **base, "kind": "incremental", "backup_id": "incr-2", "parent": "base-1", "stored": "3.0 MiB",
        "recovery_point": None})
    assert title == "incremental backup incr-2"
    assert text.startswith("# Six-hourly backup: incremental backup incr-2\n\n- tier: native-incremental "
                           "(PostgreSQL 17)\n- why: due\n- parent: base-1\n- stored: 3.0 MiB\n")
    assert text.endswith("- WAL archive gaps since the chain's base: none\n")
    point = {"time": "2026-11-24T06:00:00Z", "lsn": "0/3000000", "segment": "000000010000000000000003",
             "segments_checked": 2}
    title, text = reports.six_hourly_report("base-and-wal", "PostgreSQL 15", {**base, "kind": "wal",
                                                                              "recovery_point": point})
    assert title == "recovery point 2026-11-24T06:00:00Z"
    assert "- WAL checked this run: 2 segment(s)\n" in text


def test_rds_reports_say_what_was_kept_copied_and_deleted():
    from ubertruck_ops.core import checks

    snapshot = reports.rds_snapshot_report("prod-db", "snap-1", None, "eu-west-1", 7.0, [], [
        checks.ok("snapshot", "available", None, "ok")], ["copy refused"])
    assert snapshot.startswith("# Six-hourly RDS snapshot of `prod-db`\n\n- snapshot: `snap-1` (available, kept)\n"
                               "- DR copy: FAILED\n- expired (older than 7 days): none\n- error: copy refused\n")
    assert "none configured" in reports.rds_snapshot_report("prod-db", "snap-1", None, None, 7.0, [], [], [])
    drill = reports.rds_drill_report(False, "snap-1", "drill-1", True, ["old-1"], {"a": 2}, 90.0, 30.0, ["boom"])
    assert drill.startswith("# RDS restore drill: FAILED\n\n- restored: `snap-1`\n"
                            "- scratch instance: `drill-1` (NOT deleted)\n- leftover scratch instances deleted: old-1\n"
                            "- tables: 1, rows: 2\n")
    assert drill.endswith("- finding: boom\n")
