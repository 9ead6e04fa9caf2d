"""core/checklist_rules.py: the business figures are judged by the environment's bands, and each
result says what was measured."""

from __future__ import annotations

from ubertruck_ops.core import checklist_rules as rules
from ubertruck_ops.core import checks


def test_active_users_are_reported_never_judged():
    result = rules.active_users(12345.0)
    assert (result.status, result.value) == (checks.OK, 12345)
    assert result.detail == "12,345 customers booked in the last 24 h"
    assert rules.active_users(0).status == checks.OK


def test_the_failed_share_of_bookings_is_critical_or_high_by_the_error_rate_bands():
    assert rules.booking_success_rate(99.5, 5, 1).status == checks.OK
    high = rules.booking_success_rate(97.0, 5, 1)
    assert (high.status, high.severity) == (checks.WARN, "high")
    critical = rules.booking_success_rate(90.0, 5, 1)
    assert critical.status == checks.CRITICAL
    assert critical.detail == "90.0% of the last 24 h's bookings not cancelled"


def test_any_unsettled_payment_is_a_medium_warning():
    assert rules.pending_settlements(0).status == checks.OK
    one = rules.pending_settlements(1)
    assert (one.status, one.severity, one.detail) == (checks.WARN, "medium",
                                                      "1 captured payment(s) unsettled after 2 days")


def test_failed_jobs_and_failed_logins_warn_only_over_their_thresholds():
    assert rules.failed_background_jobs(10, 10).status == checks.OK
    jobs = rules.failed_background_jobs(11, 10)
    assert (jobs.status, jobs.severity, jobs.detail) == (checks.WARN, "medium", "11 failed in the last 24 h")
    assert rules.failed_logins(50, 50).status == checks.OK
    logins = rules.failed_logins(51, 50)
    assert (logins.status, logins.severity, logins.detail) == (checks.WARN, "high", "51 in 24 h (audit log)")


def test_a_check_with_nothing_to_look_at_is_a_low_line_naming_its_variable_never_a_pass():
    from ubertruck_ops.core.checklist_rules import not_configured

    lines = {r.name: r for r in not_configured([], None, True, [])}
    assert set(lines) == {"tls certificates", "error rate (access log)", "queue backlog"}
    assert all(r.status == "warn" and r.severity == "low" for r in lines.values())
    assert lines["tls certificates"].detail.startswith("not configured: set TLS_HOSTS")
    assert lines["queue backlog"].detail.startswith("not configured: set QUEUE_KEYS")
    assert [r.name for r in not_configured([], None, False, [])][-1] == "redis"
    assert not_configured(["ubertruck.in"], "/var/log/nginx/a.log", True, ["bull:jobs:wait"]) == []


def test_no_app_block_is_a_not_configured_line_too():
    from ubertruck_ops.core.checklist_rules import not_configured

    first = not_configured(["a"], "/log", True, ["q"], app_configured=False)[0]
    assert first.name == "app services" and first.detail.startswith("not configured: set APP_ROOT")
