"""Alerts that do not depend on a flow reporting its own failure: the dead man's switch pinged by
backups, drills and checklists (a local receiver in place of Healthchecks.io), and the automation
table. The server-side automations themselves are tested against a real `prefect server start`
in tests/test_schedules.py (a failed run and a missing nightly backup posted by the server)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.blocks.variables import environment_from_variables
from ubertruck_ops.deployments.automations import all_rule_names, missing_rules
from ubertruck_ops.deployments.schedules import DEPLOYMENTS
from ubertruck_ops.tasks.scratch_postgres import free_port

from tests.helpers import save_env
from tests.parts import PingReceiver


@pytest.fixture
def pings():
    receiver = PingReceiver().start()
    yield receiver
    receiver.stop()


def _with_ping(env: str, url: str) -> None:
    SlackNotices(ping_url=SecretStr(url)).save(block_name(env, "slack"), overwrite=True)


def test_a_nightly_backup_pings_start_then_success_and_a_failing_one_start_then_fail(source_db, local_repo, pings,
                                                                                      caplog):
    import logging

    from ubertruck_ops.flows.nightly_backup import nightly_backup

    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    _with_ping(env, f"{pings.url}/ping/3f1c-check")
    caplog.set_level(logging.DEBUG)         # every library's request log, as an operator's debug logging would
    nightly_backup(environment=env)
    assert [p for p, _ in pings.pings] == ["/ping/3f1c-check/start", "/ping/3f1c-check"]
    assert "3f1c-check" not in caplog.text, "the ping URL (the check's key) reached a log"

    broken = save_env(source_db.model_copy(update={"password": SecretStr("wrong")}),
                      BackupRepository(url=str(local_repo)))
    _with_ping(broken, f"{pings.url}/ping/other")
    state = nightly_backup(environment=broken, return_state=True)
    assert state.is_failed()
    assert [p for p, _ in pings.pings[2:]] == ["/ping/other/start", "/ping/other/fail"]
    assert "nightly backup" in pings.pings[-1][1] and "wrong" not in pings.pings[-1][1]


def test_a_dead_man_switch_that_does_not_answer_never_fails_the_backup(source_db, local_repo):
    from ubertruck_ops.flows.nightly_backup import nightly_backup

    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    _with_ping(env, f"http://127.0.0.1:{free_port()}/nobody-listens")
    assert nightly_backup(environment=env)["backup_id"]


def test_the_ping_url_comes_from_its_variable_and_must_be_http():
    base = {"DATABASE_URL": "postgresql://u:p@db.example:5432/ubertruck", "BACKUP_ENCRYPTION_KEY": "k",
            "BACKUP_REPOSITORY": "/var/backups/ubertruck"}
    env = environment_from_variables({**base, "HEALTHCHECK_PING_URL": "https://hc-ping.com/5b2c-secret"})
    assert env.slack.ping_url.get_secret_value() == "https://hc-ping.com/5b2c-secret"
    with pytest.raises(ValueError, match="HEALTHCHECK_PING_URL") as refused:
        environment_from_variables({**base, "HEALTHCHECK_PING_URL": "ftp://hc-ping.com/5b2c-secret"})
    assert "5b2c-secret" not in str(refused.value)


def test_the_archiver_and_the_watcher_have_switches_of_their_own_from_their_variables():
    base = {"DATABASE_URL": "postgresql://u:p@db.example:5432/ubertruck", "BACKUP_ENCRYPTION_KEY": "k",
            "BACKUP_REPOSITORY": "/var/backups/ubertruck"}
    env = environment_from_variables({**base, "WAL_ARCHIVE_PING_URL": "https://hc-ping.com/wal-key",
                                      "WATCH_PING_URL": "https://hc-ping.com/watch-key"})
    assert env.slack.wal_archive_ping_url.get_secret_value() == "https://hc-ping.com/wal-key"
    assert env.slack.watch_ping_url.get_secret_value() == "https://hc-ping.com/watch-key"
    assert env.slack.ping_url is None
    for name in ("WAL_ARCHIVE_PING_URL", "WATCH_PING_URL"):
        with pytest.raises(ValueError, match=name) as refused:
            environment_from_variables({**base, name: "file:///etc/wal-key"})
        assert "wal-key" not in str(refused.value)


def test_a_fail_ping_to_a_url_with_a_query_goes_to_the_fail_path_not_the_success_one(pings):
    from ubertruck_ops.tasks.notify import ping_address, ping_check

    assert ping_address("https://hc-ping.com/5b2c?create=1", "fail") == "https://hc-ping.com/5b2c/fail?create=1"
    assert ping_address("https://hc-ping.com/5b2c/", "start") == "https://hc-ping.com/5b2c/start"
    ping_check(SecretStr(f"{pings.url}/ping/slug-check?create=1"), "fail", "pg_receivewal stopped")
    ping_check(SecretStr(f"{pings.url}/ping/slug-check?create=1"), "success")
    assert [p for p, _ in pings.pings] == ["/ping/slug-check/fail?create=1", "/ping/slug-check?create=1"]


def test_every_scheduled_flow_with_a_window_has_one_missing_rule_and_an_unscheduled_one_none():
    rules = {r.flow: r for r in missing_rules("production")}
    assert rules["nightly-backup"].within == timedelta(hours=26)
    assert rules["incremental-backup"].within == timedelta(hours=7)
    assert {rules[f].within for f in ("morning-checklist", "afternoon-checklist", "evening-checklist")} == \
        {timedelta(hours=25)}
    assert set(rules) == {s.flow for s in DEPLOYMENTS if s.cron}          # every scheduled flow is watched
    assert "incremental-backup" not in {r.flow for r in missing_rules("production", frozenset({"incremental-backup"}))}
    names = all_rule_names("production")
    assert len(names) == len(set(names)) and names[0] == "ubertruck-production-run-failed"


def test_a_backup_is_compared_with_one_that_finished_in_the_same_second():
    # Seen on CI: two sub-second backups both "finished" at 12:35:50, and a finished-before rule
    # found nothing to compare the second with, so a table that lost 20% of its rows went unsaid.
    from ubertruck_ops.blocks.monitoring import CheckThresholds
    from ubertruck_ops.core.manifest import Manifest, StoredObject
    from ubertruck_ops.tasks.checks.backups import anomalies_of

    def backup(backup_id: str, started: str, rows: int) -> Manifest:
        return Manifest(backup_id, "logical", f"2026-12-02T12:35:{started}+00:00", "2026-12-02T12:35:50+00:00",
                        {}, {}, {}, [StoredObject("database.dump.zst.gpg", "database", 1_000_000, "0" * 64)],
                        {"admin.audit_log": rows})

    before = backup("20261202T123549Z-logical-00abe2", "49", 1_000)
    now = backup("20261202T123550Z-logical-6edee0", "50", 800)
    assert anomalies_of([before, now], now, CheckThresholds()) == [
        "table admin.audit_log lost 20% of its rows (1,000 -> 800 since 20261202T123549Z-logical-00abe2)"]
    assert anomalies_of([before, now], before, CheckThresholds()) == []


def test_a_backup_that_completes_after_a_table_lost_rows_warns_in_the_run_in_slack_and_in_the_morning_check(
        source_db, local_repo, slack):
    import psycopg

    from ubertruck_ops.blocks.monitoring import CheckThresholds
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.tasks.checks.backups import last_backup
    from ubertruck_ops.tasks.repository import open_repository

    env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook())
    assert nightly_backup(environment=env)["anomalies"] == []
    with psycopg.connect(**source_db.connect_kwargs()) as conn:
        total = conn.execute("SELECT count(*) FROM admin.audit_log").fetchone()[0]
        assert total >= 200, total
        conn.execute("DELETE FROM admin.audit_log WHERE id IN "
                     "(SELECT id FROM admin.audit_log ORDER BY id LIMIT %s)", (total // 5,))
    odd = nightly_backup(environment=env)["anomalies"]
    assert any("table admin.audit_log lost 20% of its rows" in a for a in odd), odd
    notice = slack.posts[-1]["blocks"][0]["text"]["text"]
    assert "completed" in slack.posts[-1]["text"] and "admin.audit_log lost 20%" in notice, notice
    check = last_backup(open_repository(BackupRepository(url=str(local_repo))), CheckThresholds())
    assert check.status == "warn" and "admin.audit_log lost 20%" in check.detail, check


def test_a_failed_nightly_backup_pages_once_with_its_flows_key_and_the_next_completed_one_resolves_it(
        source_db, local_repo, caplog):
    """Critical: the flow's own failure report pages (the same key the server's automations use) and
    posts once, no email; a completed run resolves the page. With PagerDuty answering 503 the runs
    end as they would anyway, Slack still hears, and the log says the page was not sent."""
    import logging

    from ubertruck_ops.blocks.alerting import AlertChannels
    from ubertruck_ops.core.alerts import flow_dedup_key
    from ubertruck_ops.flows.nightly_backup import nightly_backup

    from tests.parts import PagerDutyReceiver, SlackReceiver

    slack, pagerduty = SlackReceiver().start(), PagerDutyReceiver().start()
    try:
        env = save_env(source_db.model_copy(update={"password": SecretStr("wrong")}),
                       BackupRepository(url=str(local_repo)), slack_url=slack.webhook())
        AlertChannels(pagerduty_routing_key=SecretStr("R0UTING-sentinel"),
                      pagerduty_events_url=pagerduty.events_url).save(block_name(env, "alerts"), overwrite=True)
        assert nightly_backup(environment=env, return_state=True).is_failed()
        key = flow_dedup_key(env, "nightly-backup")
        assert pagerduty.actions() == [("trigger", key)] and pagerduty.refused == []
        page = pagerduty.events[0]
        assert page["payload"]["severity"] == "critical" and page["payload"]["custom_details"]["rule"] == "run failed"
        assert page["payload"]["custom_details"]["target"] == "nightly-backup"
        failed = [t for t in slack.texts() if "FAILED" in t]
        assert len(failed) == 1 and "nightly backup" in failed[0], slack.texts()

        source_db.save(block_name(env, "database"), overwrite=True)        # the password fixed
        assert nightly_backup(environment=env)["backup_id"]
        assert pagerduty.actions() == [("trigger", key), ("resolve", key)]

        pagerduty.status = 503
        caplog.set_level(logging.INFO)
        source_db.model_copy(update={"password": SecretStr("wrong")}).save(block_name(env, "database"), overwrite=True)
        assert nightly_backup(environment=env, return_state=True).is_failed()
        assert len([t for t in slack.texts() if "FAILED" in t]) == 2
        assert "PagerDuty trigger" in caplog.text and "not sent (HTTP 503)" in caplog.text
        assert len(pagerduty.raw) == 2 + 2                      # two attempts, then it gave up
        source_db.save(block_name(env, "database"), overwrite=True)
        assert nightly_backup(environment=env)["backup_id"]      # PagerDuty still down: the backup completes
        assert len(pagerduty.raw) == 4 + 2 and "PagerDuty resolve" in caplog.text
        assert "R0UTING-sentinel" not in caplog.text and "R0UTING-sentinel" not in " ".join(slack.texts())
    finally:
        slack.stop()
        pagerduty.stop()


def test_the_servers_slack_and_pagerduty_bodies_carry_any_text_and_keep_their_secrets_in_secrets():
    """The notification blocks the automations use: a body with quotes and newlines arrives as the
    same text in valid JSON, the webhook URL and the routing key live only in the blocks' secrets."""
    import json

    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    from ubertruck_ops.deployments.automations import _notification_blocks

    env = "notif-" + __import__("secrets").token_hex(3)
    SlackWebhook(url=SecretStr("https://hooks.slack.com/services/T0/B0/old-sentinel")).save(f"{env}-slack-webhook")
    _notification_blocks(env, "http://127.0.0.1:9/services/T0/B0/hook-sentinel", ("http://127.0.0.1:9/v2/enqueue",
                                                                                "R0UTING-sentinel"))
    slack = CustomWebhookNotificationBlock.load(f"{env}-slack-alerts")
    body = 'run "x" ended Failed\nmessage: can\'t {connect} \\ to db'
    request = slack._build_request_args(body, "Slack")
    assert request["url"] == "http://127.0.0.1:9/services/T0/B0/hook-sentinel"
    assert json.loads(json.dumps(request["json"])) == {"text": body}
    stored = slack.model_dump(mode="json")
    assert "hook-sentinel" not in json.dumps({k: v for k, v in stored.items() if k != "secrets"})
    page = CustomWebhookNotificationBlock.load(f"{env}-pagerduty-alerts")
    sent = page._build_request_args(body, "ubertruck/x/flow/nightly-backup")["json"]
    assert sent["routing_key"] == "R0UTING-sentinel" and sent["dedup_key"] == "ubertruck/x/flow/nightly-backup"
    assert sent["payload"]["summary"] == body
    assert "R0UTING-sentinel" not in json.dumps({k: v for k, v in page.model_dump(mode="json").items()
                                                if k != "secrets"})
    with pytest.raises(ValueError):          # the old SlackWebhook block and its copy of the secret are gone
        SlackWebhook.load(f"{env}-slack-webhook")


def test_a_page_pagerduty_refuses_is_not_sent_again_and_one_it_cannot_take_now_is_tried_twice():
    from ubertruck_ops.blocks.alerting import AlertChannels
    from ubertruck_ops.core.alerts import pagerduty_resolve
    from ubertruck_ops.tasks.pagerduty import send_event

    from tests.parts import PagerDutyReceiver

    receiver = PagerDutyReceiver().start()
    try:
        channels = AlertChannels(pagerduty_routing_key=SecretStr("k"), pagerduty_events_url=receiver.events_url)
        assert send_event(channels, {"routing_key": "k", "event_action": "trigger"}) is False     # 400: no payload
        assert len(receiver.raw) == 1 and receiver.refused == ["payload missing"]
        receiver.status = 503
        assert send_event(channels, pagerduty_resolve("ubertruck/x/flow/f", "k")) is False
        assert len(receiver.raw) == 3
    finally:
        receiver.stop()
