from datetime import UTC, datetime, timedelta

import pytest

from ubertruck_ops.core.alerts import (
    ROUTES,
    Alert,
    DigestItem,
    Silence,
    channels,
    covering,
    dedup_key,
    digest_text,
    email_text,
    ended_unannounced,
    flow_dedup_key,
    flow_failure_severity,
    kept_silences,
    pagerduty_resolve,
    pagerduty_trigger,
    parse_duration,
)

NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
ALL = frozenset({"page", "email", "slack"})


def test_the_routing_table_is_the_guides_seven_three():
    assert ROUTES == {"critical": ("page", "slack"), "high": ("email", "slack"), "medium": ("slack",),
                      "low": ("digest",)}


def test_critical_pages_and_posts_high_emails_and_posts_medium_posts_low_waits_for_the_digest():
    assert channels("critical", ALL) == ("page", "slack")
    assert channels("high", ALL) == ("email", "slack")
    assert channels("medium", ALL) == ("slack",)
    assert channels("low", ALL) == ("digest",)


def test_a_channel_that_is_not_configured_is_left_out_and_the_digest_is_always_kept():
    assert channels("critical", frozenset({"slack"})) == ("slack",)
    assert channels("high", frozenset()) == ()
    assert channels("low", frozenset()) == ("digest",)


def test_a_silenced_alert_reaches_nobody_and_an_unknown_severity_is_refused():
    assert channels("critical", ALL, silenced=True) == ()
    with pytest.raises(ValueError, match="unknown severity 'urgent'"):
        channels("urgent", ALL)


def test_a_failed_nightly_backup_is_critical_and_an_unknown_flow_high():
    assert flow_failure_severity("nightly-backup") == "critical"
    assert flow_failure_severity("deploy") == "high"
    assert flow_failure_severity("morning-checklist") == "medium"
    assert flow_failure_severity("something-new") == "high"


def test_one_incident_keeps_one_dedup_key_and_a_new_start_makes_a_new_one():
    first = dedup_key("production", "watch", "health booking-service", NOW)
    assert first == dedup_key("production", "watch", "health booking-service", NOW)
    assert first != dedup_key("production", "watch", "health booking-service", NOW + timedelta(minutes=5))
    assert first.startswith("ubertruck/production/watch/health-booking-service/")
    assert flow_dedup_key("production", "nightly-backup") == "ubertruck/production/flow/nightly-backup"


def _alert(**changes) -> Alert:
    fields = dict(environment="production", source="watch", target="health booking-service", rule="service down",
                  severity="critical", value="connection refused", since=NOW, link="http://ui/runs/1",
                  detail="3 rounds failing")
    return Alert(**(fields | changes))


def test_a_page_carries_environment_target_rule_value_since_and_a_link():
    body = pagerduty_trigger(_alert(), "R0UTING")
    assert body["event_action"] == "trigger" and body["routing_key"] == "R0UTING"
    assert body["dedup_key"] == "ubertruck/production/watch/health-booking-service"
    details = body["payload"]["custom_details"]
    assert {k: details[k] for k in ("environment", "target", "rule", "value")} == {
        "environment": "production", "target": "health booking-service", "rule": "service down",
        "value": "connection refused"}
    assert details["since"].startswith("2026-12-05 02:00:00")
    assert body["payload"]["severity"] == "critical" and body["links"][0]["href"] == "http://ui/runs/1"
    assert pagerduty_resolve(body["dedup_key"], "R0UTING") == {
        "routing_key": "R0UTING", "event_action": "resolve", "dedup_key": body["dedup_key"]}


def test_an_email_names_the_same_facts():
    subject, body = email_text(_alert(severity="high", rule="cpu > 90 %", value="95 %"))
    assert subject == "[production] HIGH: health booking-service: cpu > 90 % (95 %)"
    for fact in ("environment: production", "rule: cpu > 90 %", "value: 95 %", "since: 2026-12-05 02:00:00",
                 "link: http://ui/runs/1"):
        assert fact in body


def test_the_digest_lists_low_items_and_incidents_and_says_none_when_empty():
    subject, body = digest_text("production", "2026-12-05", [DigestItem("certificate example.com", "expires in 20 days")],
                                ["health booking-service down 02:00-02:04 (paged)"])
    assert "1 low item(s), 1 incident(s)" in subject
    assert "- certificate example.com: expires in 20 days" in body and "(paged)" in body
    assert "- none" in digest_text("production", "2026-12-05", [], [])[1]


@pytest.mark.parametrize("text, expected", [("2h", timedelta(hours=2)), ("30m", timedelta(minutes=30)),
                                            ("1h30m", timedelta(minutes=90)), ("90s", timedelta(seconds=90)),
                                            ("1d", timedelta(days=1))])
def test_a_silence_lasts_as_long_as_it_says(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "forever", "0m", "8d", "-1h", "2h;rm"])
def test_a_silence_that_would_not_expire_soon_or_cannot_be_read_is_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def _silence(target=None, minutes=60, environment="production") -> Silence:
    return Silence("s1", environment, NOW, NOW + timedelta(minutes=minutes), "db work", target)


def test_a_silence_covers_its_environment_and_target_while_it_lasts_only():
    booking = _silence("booking-service")
    assert booking.covers("production", "health booking-service", NOW + timedelta(minutes=5))
    assert booking.covers("production", "booking-service", NOW)
    assert not booking.covers("production", "health user-service", NOW)
    assert not booking.covers("staging", "health booking-service", NOW)
    assert not booking.covers("production", "health booking-service", NOW + timedelta(minutes=60))
    assert _silence().covers("production", "anything", NOW)
    assert covering([booking, _silence(environment="staging")], "production", "health user-service", NOW) is None


def test_an_ended_silence_is_announced_once_and_kept_a_day():
    ended = _silence(minutes=1)
    later = NOW + timedelta(minutes=2)
    assert ended_unannounced([ended], later) == [ended]
    announced = Silence(**{**ended.__dict__, "announced_end": True})
    assert ended_unannounced([announced], later) == []
    assert kept_silences([ended], later) == [ended]
    assert kept_silences([ended], NOW + timedelta(days=2)) == []
    assert Silence.from_dict(ended.to_dict()) == ended


def test_blocks_init_says_which_channels_are_configured_and_how_to_configure_the_others():
    from ubertruck_ops.core.alerts import channel_lines

    lines = channel_lines(frozenset({"slack"}))
    assert lines[0].startswith("alert channel page: not configured: set PAGERDUTY_ROUTING_KEY (critical alerts")
    assert "set SMTP_URL, ALERT_EMAIL_FROM and ALERT_EMAIL_TO (high alerts" in lines[1]
    assert lines[2] == "alert channel slack: configured"


def test_overnight_alerts_pair_each_down_with_its_recovery_and_say_who_was_paged():
    from ubertruck_ops.core.alerts import Happened, overnight_lines, pair_watch_events

    events = [("down", "health booking-service", NOW, {"paged": True}),
              ("recovered", "health booking-service", NOW + timedelta(minutes=4), {}),
              ("down", "disk /", NOW + timedelta(hours=1), {"paged": False, "silenced_by": "ab12"})]
    happened = pair_watch_events(list(reversed(events)))
    assert happened == [Happened("health booking-service down", NOW, 240.0, True),
                        Happened("disk / down", NOW + timedelta(hours=1), None, False, True)]
    lines = overnight_lines(happened)
    assert lines[0].startswith("health booking-service down at 02:00 UTC for 4") and lines[0].endswith("(paged)")
    assert lines[1] == "disk / down at 03:00 UTC STILL GOING (silenced)"


def test_a_hand_written_silence_cannot_last_forever_nor_break_the_alerts_with_a_time_without_offset():
    written = {"id": "ui", "environment": "production", "starts": NOW.isoformat(),
               "ends": "2099-01-01T00:00:00+00:00", "reason": "forgot to pick an end"}
    assert Silence.from_dict(written).ends == NOW + timedelta(days=7)
    for naive in ({"starts": "2026-12-05T02:00:00"}, {"ends": "2026-12-05T04:00:00"}):
        with pytest.raises(ValueError, match="UTC offset"):
            Silence.from_dict(written | naive)
