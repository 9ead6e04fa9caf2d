from datetime import UTC, datetime, timedelta

from ubertruck_ops.core.notices import watch_transition
from ubertruck_ops.core.watch import (
    Incidents,
    Request,
    counts_against,
    medium_rounds,
    parse_access_line,
    traffic_verdict,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_a_target_is_down_after_three_failing_rounds_once_then_reminded_then_recovered():
    incidents = Incidents(rounds_to_alert=3, remind_seconds=1800)
    said = [incidents.observe("health booking-service", True, "critical", "refused", t) for t in (0, 30, 60, 90)]
    assert [s.kind if s else None for s in said] == [None, None, "down", None]
    assert incidents.down() == ["health booking-service"]
    assert incidents.observe("health booking-service", True, "critical", "refused", 1859) is None
    reminder = incidents.observe("health booking-service", True, "critical", "refused", 1860)
    assert reminder.kind == "reminder" and reminder.seconds == 1800
    back = incidents.observe("health booking-service", False, "", "ok", 1900)
    assert back.kind == "recovered" and back.seconds == 1840 and incidents.down() == []


def test_a_failure_that_does_not_last_three_rounds_is_never_an_incident():
    incidents = Incidents()
    for t, failing in enumerate([True, True, False, True, True, False]):
        assert incidents.observe("database", failing, "critical", "", t) is None


def test_the_access_log_format_parses_and_other_lines_do_not():
    line = ('10.0.1.5 - - [02/Dec/2026:09:59:30 +0000] "GET /api/bookings HTTP/1.1" 502 157 "-" '
            '"curl/8.0" 0.004\n')
    assert parse_access_line(line) == Request(NOW - timedelta(seconds=30), 502, 0.004)
    assert parse_access_line('10.0.1.5 - - [02/Dec/2026:09:59:30 +0000] "GET / HTTP/1.1" 200 1 "-" "x"') is None
    assert parse_access_line("garbage") is None


def _requests(count: int, errors: int, seconds: float = 0.05, age: float = 10) -> list[Request]:
    at = NOW - timedelta(seconds=age)
    return [Request(at, 500 if i < errors else 200, seconds) for i in range(count)]


def test_error_rate_above_ten_percent_is_critical_above_five_high_and_below_ok():
    assert traffic_verdict(_requests(100, 11), NOW)[:2] == ("critical", "critical")
    assert traffic_verdict(_requests(100, 6), NOW)[:2] == ("warn", "high")
    assert traffic_verdict(_requests(100, 5), NOW)[:2] == ("ok", "")


def test_p95_above_five_seconds_is_critical_above_two_high():
    assert traffic_verdict(_requests(100, 0, seconds=5.5), NOW)[:2] == ("critical", "critical")
    assert traffic_verdict(_requests(100, 0, seconds=2.5), NOW)[:2] == ("warn", "high")


def test_only_the_last_five_minutes_count_and_too_few_requests_are_not_judged():
    old = _requests(100, 100, age=400)
    assert traffic_verdict(old + _requests(50, 0), NOW)[0] == "ok"
    assert traffic_verdict(_requests(10, 10), NOW)[0] == "ok"


def test_critical_and_unmeasurable_count_as_critical_high_and_medium_warnings_as_themselves_low_not_at_all():
    assert counts_against("critical", "critical") == (True, "critical")
    assert counts_against("error", "") == (True, "critical")
    assert counts_against("warn", "high") == (True, "high")
    assert counts_against("warn", "medium") == (True, "medium")
    assert counts_against("warn", "low") == (False, "") and counts_against("ok", "") == (False, "")


def test_a_medium_finding_is_posted_only_once_it_has_lasted_its_minutes_and_worsening_to_high_posts_at_once():
    rounds = medium_rounds(10, 30)
    assert rounds == 20 and medium_rounds(10, 700) == 1 and medium_rounds(0.5, 30) == 1
    incidents = Incidents(rounds_to_alert=3, medium_rounds=rounds)
    said = [incidents.observe("cpu", True, "medium", "85% used", 30 * n) for n in range(rounds)]
    assert [s.kind for s in said if s] == ["down"] and said[-1].severity == "medium"      # after 10 minutes
    climbing = Incidents(rounds_to_alert=3, medium_rounds=rounds)
    said = [climbing.observe("cpu", True, severity, "", 30 * n) for n, severity in
            enumerate(["medium", "medium", "medium", "medium", "high"])]
    assert [(s.kind, s.severity) for s in said if s] == [("down", "high")] and said[-1] is not None
    assert Incidents(rounds_to_alert=5, medium_rounds=2).medium_rounds == 5     # never sooner than critical


def test_an_outage_is_down_and_a_passed_limit_is_over_its_limit_in_the_notice():
    assert "CRITICAL: health booking-service is DOWN" in watch_transition("prod", "down", "health booking-service",
                                                                          "critical", "refused", 0)["text"]
    assert "MEDIUM: cpu is over its limit" in watch_transition("prod", "down", "cpu", "medium", "85% used", 0)["text"]
    assert "still over its limit after" in watch_transition("prod", "reminder", "cpu", "high", "95%", 1800)["text"]


def test_the_watchers_switch_hears_success_at_most_once_a_period_and_a_failure_at_once():
    from ubertruck_ops.core.watch import Heartbeat

    beat = Heartbeat(period=60)
    said = [beat.after_round(failed, t) for t, failed in
            [(0, False), (30, False), (61, False), (70, True), (80, True), (131, True), (140, False), (150, False)]]
    assert said == ["success", None, "success", "fail", None, "fail", "success", None]


def _line(user: str = "-", status: int = 200, request: str = "GET / HTTP/1.1", agent: str = "curl") -> str:
    return f'10.0.0.9 - {user} [05/Dec/2026:02:00:00 +0000] "{request}" {status} 12 "-" "{agent}" 0.004'


def test_a_remote_user_holding_brackets_cannot_hide_a_request():
    # nginx logs Basic "[x:y"'s user as `[x` ([ and ] are not escaped); the line is still read
    for user in ("[x", "[x]", "a [01/Jan/2000:00:00:00 +0000] b", "]] [[", "x\\x22 [y"):
        found = parse_access_line(_line(user, 500))
        assert found is not None and found.status == 500, user
        assert found.at == datetime(2026, 12, 5, 2, 0, tzinfo=UTC), user


def test_no_field_a_client_controls_can_make_a_line_read_as_another_status_or_time():
    sneaky = parse_access_line(_line("-", 500, 'GET /\\x22 200 1 \\x22-\\x22 \\x22x\\x22 0.001 HTTP/1.1',
                                     'ua\\x22 200 1 \\x22-\\x22 \\x22x\\x22 0.001'))
    assert sneaky is not None and sneaky.status == 500 and sneaky.seconds == 0.004
    combined = '10.0.0.9 - - [05/Dec/2026:02:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "curl"'
    assert parse_access_line(combined) is None                   # nginx's default format: no $request_time


def test_unreadable_lines_count_as_failed_requests_and_a_log_in_another_format_is_said_by_name():
    good = [Request(NOW, 200, 0.01)] * 30
    status, severity, value, detail = traffic_verdict(good, NOW, unreadable=300)
    assert (status, severity) == ("critical", "critical") and value.startswith("90.9% 5xx"), detail
    assert "300 of 330 lines" in detail and "log_format ubertruck_timed" in detail
    status, severity, _, detail = traffic_verdict([], NOW, unreadable=40)
    assert (status, severity) == ("warn", "high") and "40 of 40 lines" in detail and "$request_time" in detail
    assert traffic_verdict(good, NOW, unreadable=1)[0] == "ok"    # one odd line in 31 is noise
    assert traffic_verdict([], NOW, unreadable=2)[0] == "ok"
