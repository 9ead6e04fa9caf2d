"""Severity rules, the check runner's deadlines and the summaries, without Prefect or servers."""

from __future__ import annotations

import time

import pytest

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CRITICAL, ERROR, OK, WARN, CheckResult
from ubertruck_ops.flows.checklist_report import slack_summary
from ubertruck_ops.flows.maintenance import capacity_planning, performance_review, tables_to_vacuum
from ubertruck_ops.tasks.checks import run_checks


@pytest.mark.parametrize("value, status, severity", [(95, WARN, "high"), (85, WARN, "medium"), (80, OK, ""),
                                                    (10, OK, "")])
def test_cpu_follows_the_guides_high_and_medium_rules(value, status, severity):
    result = checks.above("cpu", value, [(90, WARN, "high"), (80, WARN, "medium")], "%")
    assert (result.status, result.severity) == (status, severity)


@pytest.mark.parametrize("seconds, status", [(6, CRITICAL), (3, WARN), (1.5, OK)])
def test_response_times_are_critical_over_5_s_and_medium_over_2_s(seconds, status):
    assert checks.above("response", seconds, [(5, CRITICAL, "critical"), (2, WARN, "medium")], " s").status == status


@pytest.mark.parametrize("used, status, severity", [(95, CRITICAL, "critical"), (75, WARN, "low"), (50, OK, "")])
def test_disk_is_critical_under_10_percent_free_and_low_over_70_percent_used(used, status, severity):
    result = checks.disk("disk /", used, critical_free_pct=10, low_used_pct=70)
    assert (result.status, result.severity) == (status, severity)


def test_cache_hit_rate_is_medium_when_low():
    assert checks.below("hit", 70.0, [(90, WARN, "medium")], "%").status == WARN
    assert checks.below("hit", 99.0, [(90, WARN, "medium")], "%").status == OK


def test_worst_and_order_put_critical_first_and_error_is_never_ok():
    results = [CheckResult("b", OK), CheckResult("a", WARN), CheckResult("c", ERROR), CheckResult("d", CRITICAL)]
    assert checks.worst(results) == CRITICAL
    assert [r.name for r in checks.ordered(results)] == ["d", "c", "a", "b"]
    assert checks.worst([CheckResult("x", OK), CheckResult("y", ERROR)]) == ERROR
    assert checks.error("x", "could not measure").status == ERROR


def test_day_over_day_change_and_days_until_full():
    assert checks.change(110, 100) == "+10.0%" and checks.change(5, 0) == "new" and checks.change(None, 3) == "n/a"
    assert checks.days_until_full(used_now=120, used_days_ago=100, days=20, capacity=200) == pytest.approx(60)
    assert checks.days_until_full(used_now=100, used_days_ago=120, days=20, capacity=200) is None
    assert checks.days_until_full(used_now=190, used_days_ago=100, days=20, capacity=200) == 0.0


def test_a_hung_check_costs_only_its_deadline_and_a_raising_one_is_error():
    def hangs():
        time.sleep(4)
        return checks.ok("hangs")

    def raises():
        raise ConnectionError("refused")

    clock = time.monotonic()
    results = {r.name: r for r in run_checks({"hangs": hangs, "raises": raises, "fine": lambda: checks.ok("fine")},
                                             timeout=1.0)}
    assert time.monotonic() - clock < 2.0
    assert results["hangs"].status == CRITICAL and "no answer within 1 s" in results["hangs"].detail
    assert results["raises"].status == ERROR and "ConnectionError: refused" in results["raises"].detail
    assert results["fine"].status == OK


def test_slack_summary_lists_critical_items_first_and_carries_no_secret():
    results = [CheckResult("disk /", WARN, 75, "", "75% used", "low"),
               CheckResult("health payment-service", CRITICAL, "down", "2xx", "no answer on port 3005", "critical"),
               CheckResult("cpu", OK, 10, "", "10%")]
    payload = slack_summary("Morning checklist", "production", results)
    lines = payload["blocks"][0]["text"]["text"].splitlines()
    assert "1 critical" in lines[0] and "payment-service" in lines[1] and "disk /" in lines[2]
    assert all("cpu" not in line for line in lines[1:])


def test_vacuum_picks_tables_over_either_threshold():
    stats = [{"table": "a.big", "live": 1_000_000, "dead": 20_000}, {"table": "a.small", "live": 100, "dead": 50},
             {"table": "a.clean", "live": 1000, "dead": 3}]
    assert tables_to_vacuum(stats, min_dead=10_000, min_ratio_pct=10) == ["a.big", "a.small"]


def test_reviews_say_when_they_have_nothing_to_go_on():
    import datetime as dt

    assert performance_review({}, dt.date(2026, 11, 30), 2).status == ERROR
    assert capacity_planning({"2026-11-01": {"disk used bytes": 1, "disk total bytes": 10}}).status == ERROR


@pytest.mark.parametrize("days, status, severity", [(-1, CRITICAL, "critical"), (10, WARN, "low"), (90, OK, "")])
def test_certificates_are_low_within_30_days_and_critical_once_expired(days, status, severity):
    result = checks.expiry("tls ubertruck.in", days, 30, "2026-12-04")
    assert (result.status, result.severity) == (status, severity)
