"""core/checks.py: the guide's severity rules, the constructors and the verdicts on measurements."""

from __future__ import annotations

import pytest

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CRITICAL, ERROR, OK, WARN, CheckResult
from ubertruck_ops.core.pm2 import Pm2App
from ubertruck_ops.core.releases import Probe


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


@pytest.mark.parametrize("days, status, severity", [(-1, CRITICAL, "critical"), (10, WARN, "low"), (90, OK, "")])
def test_certificates_are_low_within_30_days_and_critical_once_expired(days, status, severity):
    result = checks.expiry("tls ubertruck.in", days, 30, "2026-12-04")
    assert (result.status, result.severity) == (status, severity)


def test_critical_and_warn_build_the_guides_priorities():
    assert checks.critical("db", "down", "answers", "no answer") == CheckResult("db", CRITICAL, "down", "answers",
                                                                                "no answer", "critical")
    assert checks.warn("logs", 3, "0", "3 new lines") == CheckResult("logs", WARN, 3, "0", "3 new lines", "medium")
    assert checks.warn("updates", 2, "0", "2 packages", "low").severity == "low"
    late = checks.timed_out("redis", 10)
    assert (late.status, late.severity, late.detail, late.seconds) == (CRITICAL, "critical", "no answer within 10 s", 10)


@pytest.mark.parametrize("code, success", [(200, True), (204, True), (299, True), (199, False), (301, False),
                                           (503, False), (None, False)])
def test_only_a_2xx_answer_is_success(code, success):
    assert checks.is_2xx(code) is success


def test_a_service_is_healthy_only_when_all_three_endpoints_answer_2xx():
    healthy = checks.service_health("user-service", 3001, Probe("user-service", 200, "v1.2.0", 200, 204))
    assert (healthy.status, healthy.value, healthy.detail) == (OK, "v1.2.0", "user-service v1.2.0: healthy, ready, live")
    down = checks.service_health("user-service", 3001, Probe("user-service", error="ConnectError: refused"))
    assert (down.status, down.severity, down.value) == (CRITICAL, "critical", "down")
    assert down.detail == "no answer on port 3001: ConnectError: refused"
    not_ready = checks.service_health("payment-service", 3005, Probe("payment-service", 200, "v1.3.1", 503, None))
    assert not_ready.status == CRITICAL and not_ready.value == "/health/ready 503, /health/live None"
    assert not_ready.detail == "payment-service answers /health/ready 503, /health/live None"


def test_an_extra_endpoint_is_critical_unless_it_answers_2xx():
    assert checks.endpoint("https://ubertruck.in", 200, milliseconds=42.4).detail == "42 ms"
    assert checks.endpoint("https://ubertruck.in", 502).detail == "answered 502"
    gone = checks.endpoint("https://ubertruck.in", None, "ConnectError: refused")
    assert (gone.name, gone.status, gone.value) == ("endpoint https://ubertruck.in", CRITICAL, "down")


def test_pm2_services_are_critical_when_not_online_and_medium_after_restarts():
    def app(name, service, status="online", restarts=0):
        return Pm2App(name, 0, service, status, restarts, "", None)

    apps = [app("user-service@v1", "user-service", restarts=3), app("fleet-service@v1", "fleet-service", "errored")]
    results = {r.name: r for r in checks.pm2_services(["user-service", "fleet-service", "route-service"], apps,
                                                       {"user-service@v1": 1}, restarts_medium=0)}
    assert results["pm2 user-service"].status == WARN and results["pm2 user-service"].value == 2
    assert results["pm2 fleet-service"].status == CRITICAL and "fleet-service@v1 errored" in results["pm2 fleet-service"].detail
    assert results["pm2 route-service"].detail == "route-service: not running"
    calm = checks.pm2_services(["user-service"], apps, {"user-service@v1": 3}, restarts_medium=0)
    assert calm[0].status == OK
