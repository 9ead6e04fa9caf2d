"""The daily checklists and the maintenance flows against real PostgreSQL, Redis, PM2-run services,
HTTP endpoints and a Slack receiver."""

from __future__ import annotations

import json
import time
from datetime import UTC
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from ubertruck_ops.blocks.monitoring import CheckThresholds, RedisCache
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.checklists import afternoon_checklist, evening_checklist, morning_checklist
from ubertruck_ops.flows.deploy import deploy
from ubertruck_ops.flows.maintenance import monthly_maintenance, weekly_maintenance
from ubertruck_ops.tasks import pm2
from ubertruck_ops.tasks.checks.orchestration import checklist_rows
from ubertruck_ops.tasks.checks.reports import record_day

from tests.helpers import make_app_host, make_database, require, save_env, stop_app_host
from tests.parts import PingReceiver, RedisServer, SilentServer, SlackReceiver, flow_run_artifacts


@pytest.fixture(scope="module")
def live(pg18, pm2_path, app_repository, tmp_path_factory):
    """An environment with six services live under PM2 (v1.2.0, deployed by the deploy flow, which
    also took a backup before its migrations), a real Redis, and a Slack receiver."""
    import shutil

    require(shutil.which("redis-server") is not None, "redis-server is missing: apt-get install -y redis-server")
    redis_server = RedisServer().start()
    slack = SlackReceiver().start()
    app = make_app_host(pm2_path, app_repository)
    db = make_database(pg18)     # below ~10 MB the generator adds no rows to an empty database's ~8 MB
    repo = tmp_path_factory.mktemp("checklist-repo")
    env = save_env(db, BackupRepository(url=str(repo)), app=app, slack_url=slack.webhook())
    CheckThresholds(check_timeout_seconds=4, auth_log=None, cache_cleanup_patterns=["cache:tmp:*"],
                    queue_keys=["bull:jobs:wait"], vacuum_dead_tuples=100).save(f"{env}-thresholds", overwrite=True)
    RedisCache(url=redis_server.url, password=SecretStr(redis_server.password)).save(f"{env}-redis", overwrite=True)
    assert deploy(tag="v1.2.0", environment=env)["backup_id"]
    yield {"env": env, "app": app, "db": db, "repo": repo, "redis": redis_server, "slack": slack}
    stop_app_host(app)
    slack.stop()
    redis_server.stop()


def results_of(state) -> dict[str, dict]:
    rows = checklist_rows(state.state_details.flow_run_id)
    assert rows, "no table artifact published"
    return {row["name"]: row for row in rows}


def test_morning_checklist_on_a_healthy_system_then_new_error_lines_then_a_service_down(live):
    env, app, slack = live["env"], live["app"], live["slack"]
    state = morning_checklist(environment=env, return_state=True)
    assert state.is_completed(), state.message
    results = results_of(state)
    for service in app.services:
        assert results[f"health {service}"]["status"] == "ok"
        assert results[f"pm2 {service}"]["status"] == "ok"
    for name in ("last night's backup", "database reachable", "response times", "error logs", "scheduled jobs late"):
        assert results[name]["status"] == "ok", results[name]
    assert "match their manifest" in results["last night's backup"]["detail"]
    # what it cannot check says so, as a low line, never as a pass (no TLS_HOSTS, no WATCH_ACCESS_LOG here)
    assert (results["tls certificates"]["status"], results["tls certificates"]["severity"]) == ("warn", "low")
    assert results["tls certificates"]["detail"].startswith("not configured: set TLS_HOSTS")
    assert results["error rate (access log)"]["detail"].startswith("not configured: set WATCH_ACCESS_LOG")
    assert "queue backlog" not in results                       # QUEUE_KEYS is set in this environment
    report = next(a for a in flow_run_artifacts(state) if a.type == "markdown")
    assert "\u2705 ok" in report.data, report.data[:500]           # the UI shows no Slack shortcodes
    assert not any(code in report.data for code in (":white_check_mark:", ":warning:", ":red_circle:"))
    assert report.key == "morning-checklist-report"              # one key per flow: the UI keeps its history

    # New lines in an error log since the last run: reported once, with the line itself.
    log = Path(app.logs) / "booking-service-error.log"
    with open(log, "a") as handle:
        handle.write("2026-11-24 09:01:02 +05:30: TypeError: cannot read properties of undefined (reading 'id')\n")
    results = results_of(morning_checklist(environment=env, return_state=True))
    assert results["error logs"]["status"] == "warn" and "cannot read properties" in results["error logs"]["detail"]
    assert results_of(morning_checklist(environment=env, return_state=True))["error logs"]["status"] == "ok"

    # A service down: critical, the run Failed, Slack lists the critical items first.
    booking = next(a for a in pm2.list_apps(app) if a.service == "booking-service")
    pm2.delete_apps(app, [booking.pm_id])
    try:
        state = morning_checklist(environment=env, return_state=True)
        assert state.is_failed() and "booking-service" in state.message
        results = results_of(state)
        assert results["health booking-service"]["status"] == "critical"
        assert results["pm2 booking-service"]["status"] == "critical"
        assert results["health user-service"]["status"] == "ok"
        summary = slack.posts[-1]["blocks"][0]["text"]["text"]
        first_item = summary.splitlines()[1]
        assert ":red_circle:" in first_item and "booking-service" in first_item
    finally:
        pm2.hand_over.fn(app, "booking-service", "v1.2.0", Path(app.app_root) / "ecosystem.config.js", config=1)


def test_one_endpoint_that_never_answers_costs_only_its_timeout(live):
    env = live["env"]
    silent = SilentServer().start()
    limits = CheckThresholds.load(f"{env}-thresholds")
    try:
        limits.endpoints = [silent.url]
        limits.save(f"{env}-thresholds", overwrite=True)
        clock = time.monotonic()
        state = morning_checklist(environment=env, return_state=True)
        wall = time.monotonic() - clock
    finally:
        limits.endpoints = []
        limits.save(f"{env}-thresholds", overwrite=True)
        silent.stop()
    assert state.is_failed()
    results = results_of(state)
    assert results[f"endpoint {silent.url}"]["status"] == "critical"
    assert results["health user-service"]["status"] == "ok"
    assert wall < limits.check_timeout_seconds + 8, f"the checklist took {wall:.1f} s"


def test_database_unreachable_is_critical_and_the_rest_still_reports(live, pg18):
    db = live["db"].model_copy(update={"port": pg18.port + 1 if pg18.port < 65000 else pg18.port - 1})
    env = save_env(db, BackupRepository(url=str(live["repo"])), app=live["app"])
    state = morning_checklist(environment=env, return_state=True)
    assert state.is_failed()
    results = results_of(state)
    unreachable = results["database reachable"]
    assert unreachable["status"] == "critical" and db.database in unreachable["detail"]
    assert db.password.get_secret_value() not in json.dumps(results)
    assert results["health user-service"]["status"] == "ok"
    assert results["last night's backup"]["status"] == "ok"


def test_afternoon_checklist_with_redis_up_then_stopped(live):
    env, redis_server = live["env"], live["redis"]
    client = redis_server.client()
    for number in range(50):
        client.set(f"cache:user:{number}", "x")
        client.get(f"cache:user:{number}")
    client.get("cache:missing")
    state = afternoon_checklist(environment=env, return_state=True)
    results = results_of(state)
    for name in ("active users", "booking success rate", "database connections", "postgres cache hit rate",
                 "redis cache hit rate", "queue backlog", "response times"):
        assert results[name]["status"] in ("ok", "warn"), results[name]
    assert results["redis cache hit rate"]["status"] == "ok"

    redis_server.stop()
    try:
        state = afternoon_checklist(environment=env, return_state=True)
        results = results_of(state)
        assert state.is_failed()
        assert results["redis cache hit rate"]["status"] == "critical"
        assert results["database connections"]["status"] in ("ok", "warn")
        assert results["active users"]["status"] == "ok"
        assert redis_server.password not in json.dumps(results)
    finally:
        redis_server.start()
        RedisCache(url=redis_server.url, password=SecretStr(redis_server.password)).save(f"{env}-redis", overwrite=True)


def test_watch_says_redis_is_down_once_its_rounds_fail_and_that_it_is_back_after_a_restart(live):
    from ubertruck_ops.blocks.environment import load_environment
    from ubertruck_ops.operations.watch import Watch

    env, redis_server, slack = live["env"], live["redis"], live["slack"]
    limits = CheckThresholds.load(f"{env}-thresholds").model_copy(update={"watch_rounds_to_alert": 2})
    watcher = Watch(env, load_environment(env), limits)

    def redis_said() -> list[tuple[str, str]]:
        return [(t.kind, t.severity) for t in watcher.round() if t.target == "redis reachable"]

    assert "redis reachable" in watcher.plan() and redis_said() == []
    port = redis_server.port
    redis_server.stop()
    try:
        assert redis_said() == []                       # one failing round is not an incident yet
        assert redis_said() == [("down", "critical")]
        down = [json.dumps(post) for post in slack.posts if "redis reachable is DOWN" in post.get("text", "")]
        assert len(down) == 1 and f"127.0.0.1:{port}" in down[0], down       # the detail names where
        assert redis_said() == []                       # said once, not every round
    finally:
        redis_server.start(port)
    assert redis_said() == [("recovered", "critical")]
    assert any("redis reachable recovered after" in text for text in slack.texts()[-3:]), slack.texts()[-3:]
    assert redis_server.password not in json.dumps(slack.posts)


def test_slack_down_still_publishes_the_report(live):
    down = SlackReceiver(status=500).start()
    try:
        env = save_env(live["db"], BackupRepository(url=str(live["repo"])), app=live["app"], slack_url=down.webhook())
        state = morning_checklist(environment=env, return_state=True)
    finally:
        down.stop()
    assert state.is_completed(), state.message
    assert down.posts, "the summary was not even attempted"
    assert results_of(state)["health user-service"]["status"] == "ok"


def test_evening_report_compares_the_day_with_yesterday_draws_it_and_emails_the_digest(live, tmp_path, caplog):
    import logging

    from ubertruck_ops.blocks.alerting import AlertChannels

    from tests.parts import SmtpReceiver, serve_tls_certificate

    env, repo = live["env"], live["repo"]
    smtp = SmtpReceiver(tmp_path).start()
    channels = AlertChannels(smtp_url=SecretStr(smtp.url()), email_from="ops@ubertruck.in",
                             email_to=["oncall@ubertruck.in", "cto@ubertruck.in"])
    channels.save(f"{env}-alerts", overwrite=True)
    with serve_tls_certificate(days_valid=20) as served:
        limits = CheckThresholds.load(f"{env}-thresholds")
        limits.tls_hosts = [served.target]
        limits.save(f"{env}-thresholds", overwrite=True)
        try:
            state = evening_checklist(environment=env, return_state=True)
            smtp.stop()                        # the mail server down: the next evening still completes
            caplog.set_level(logging.INFO)
            again = evening_checklist(environment=env, return_state=True)
        finally:
            limits.tls_hosts = []
            limits.save(f"{env}-thresholds", overwrite=True)
            AlertChannels().save(f"{env}-alerts", overwrite=True)
            smtp.stop()
    digests = [m for m in smtp.messages if "daily digest" in m["Subject"]]
    assert len(digests) == 1 and smtp.envelopes[-1][1] == ["oncall@ubertruck.in", "cto@ubertruck.in"], smtp.envelopes
    text = digests[0].get_payload(decode=True).decode()
    assert f"- tls {served.target}: " in text and "expires" in text, text     # 7.3's certificate < 30 days, low
    assert "Today's incidents:" in text
    assert not again.is_failed() or "critical" in (again.message or ""), again.message
    assert "email" in caplog.text and "not sent" in caplog.text, "the log does not say the digest was not sent"
    results = results_of(state)
    # the guide's 7.3 low-priority rules, daily: a certificate expiring within 30 days, disk, updates
    tls = results[f"tls {served.target}"]
    assert tls["status"] == "warn" and tls["severity"] == "low", tls
    assert "pending updates" in results and any(name.startswith("disk ") for name in results)
    assert results["daily metrics"]["status"] == "ok" and "bookings" in results["daily metrics"]["detail"]
    # the test API has no deployments: the schedules check says so instead of passing
    assert results["schedule nightly-backup"]["status"] == "warn" and "no deployment nightly-backup/" in \
        results["schedule nightly-backup"]["detail"]
    report = next(a for a in flow_run_artifacts(state) if a.type == "markdown")
    assert "data:image/png;base64," in report.data and "| bookings |" in report.data
    charts = list(Path(repo).glob(f"reports/{env}/*/*/*/status.png"))
    assert charts and charts[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((Path(repo) / "reports" / env / "daily-figures.json").read_text())
    assert any("bookings" in figures and "disk used bytes" in figures for figures in history.values())
    assert any("daily chart" in json.dumps(post) for post in live["slack"].posts)


def test_weekly_maintenance_vacuums_cleans_the_cache_and_checks_logs(live):
    env, db, redis_server = live["env"], live["db"], live["redis"]
    with psycopg.connect(**db.connect_kwargs(), autocommit=True) as conn:
        conn.execute("ALTER TABLE booking.bookings SET (autovacuum_enabled = false)")
        conn.execute("UPDATE booking.bookings SET notes = coalesce(notes, '') || '.'")
        conn.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.2)
    client = redis_server.client()
    for number in range(30):
        client.set(f"cache:tmp:{number}", "x")
    client.set("session:keep", "x")
    state = weekly_maintenance(environment=env, return_state=True)
    results = results_of(state)
    assert "booking.bookings" in results["vacuum analyze"]["detail"]
    assert "cache:tmp:*: 30 key(s) removed" in results["cache clean-up"]["detail"]
    assert client.exists("session:keep") and not client.keys("cache:tmp:*")
    assert results["log rotation"]["status"] == "ok"
    assert results["pending updates"]["status"] in ("ok", "warn", "error")
    with psycopg.connect(**db.connect_kwargs()) as conn:
        dead = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'bookings'").fetchone()[0]
    assert dead < 100


def test_monthly_maintenance_drills_reviews_and_plans_capacity(live, tmp_path):
    import datetime as dt

    from ubertruck_ops.tasks.repository import open_repository

    from tests.parts import serve_tls_certificate

    env, repo = live["env"], live["repo"]
    today = dt.datetime.now(dt.UTC).date()
    gib = 2**30
    local = open_repository(BackupRepository(url=str(repo)))
    for days_ago, used, seconds in ((20, 100 * gib, 0.05), (10, 110 * gib, 0.08), (0, 120 * gib, 0.06)):
        record_day(local, env, today - dt.timedelta(days=days_ago),
                   {"disk used bytes": used, "disk total bytes": 200 * gib, "response seconds": seconds,
                    "database MiB": 10 + days_ago})
    with serve_tls_certificate(days_valid=10) as served:
        target = served.target
        limits = CheckThresholds.load(f"{env}-thresholds")
        limits.tls_hosts = [target]
        limits.save(f"{env}-thresholds", overwrite=True)
        try:
            state = monthly_maintenance(environment=env, drill_mode="logical", return_state=True)
        finally:
            limits.tls_hosts = []
            limits.save(f"{env}-thresholds", overwrite=True)
    assert state.is_completed(), state.message
    results = results_of(state)
    assert results[f"tls {target}"]["status"] == "warn" and results[f"tls {target}"]["severity"] == "low"
    assert "renew it" in results[f"tls {target}"]["detail"]
    assert served.handshakes >= 1 and served.failures == [], served.failures   # read from our server
    assert results["restore drill"]["status"] == "ok"
    assert "response median" in results["performance review"]["detail"]
    # 1 GiB a day, 60 GiB left until 90% of 200 GiB: about 60 days, inside the 90-day warning
    capacity = results["capacity planning"]
    assert capacity["status"] == "warn" and "60 days until 90% full" in capacity["detail"]


def test_a_missing_or_damaged_backup_is_critical(live, tmp_path):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    pings = PingReceiver().start()
    env = save_env(live["db"], BackupRepository(url=str(empty)), app=live["app"], ping_url=f"{pings.url}/ping/9am")
    state = morning_checklist(environment=env, return_state=True)
    pings.stop()
    results = results_of(state)
    assert results["last night's backup"]["status"] == "critical" and "no complete backup" in \
        results["last night's backup"]["detail"]
    # the dead man's switch hears the checklist start and fail (a critical item fails the run)
    assert state.is_failed() and [path for path, _ in pings.pings] == ["/ping/9am/start", "/ping/9am/fail"]
    assert "last night's backup" in pings.pings[-1][1], pings.pings

    damaged = tmp_path / "damaged"
    shutil.copytree(live["repo"], damaged)
    dump = next(damaged.glob("*/*/*/*/database.dump.zst.gpg"))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    env = save_env(live["db"], BackupRepository(url=str(damaged)), app=live["app"])
    state = morning_checklist(environment=env, return_state=True)
    assert state.is_failed()
    backup = results_of(state)["last night's backup"]
    assert backup["status"] == "critical" and "database.dump.zst.gpg" in backup["detail"]


def test_watch_pages_a_killed_service_once_resolves_it_emails_a_high_finding_and_a_silence_quiets_every_channel(
        live, tmp_path):
    """One incident is one page and one Slack notice (no email); its recovery resolves that page; a
    second kill is a new incident; a silence on the service pages, emails and posts nothing while it
    lasts (the event is still in the feed), announces its end, and afterwards a kill pages again; a
    high finding emails and posts and never pages. No secret reaches a page, a post or an email."""
    import threading
    from datetime import datetime, timedelta

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
    from prefect.events.worker import EventsWorker

    from ubertruck_ops.blocks.alerting import AlertChannels
    from ubertruck_ops.blocks.environment import load_environment
    from ubertruck_ops.operations import silences
    from ubertruck_ops.operations.watch import Watch
    from ubertruck_ops.tasks.events import resource_id

    from tests.parts import PagerDutyReceiver, SmtpReceiver

    env, app, slack = live["env"], live["app"], live["slack"]
    pagerduty = PagerDutyReceiver().start()
    smtp = SmtpReceiver(tmp_path, starttls=True, login=("alerts", "smtp-sentinel-pw")).start()
    routing_key = "R0UTING-sentinel-key"
    AlertChannels(pagerduty_routing_key=SecretStr(routing_key), pagerduty_events_url=pagerduty.events_url,
                  smtp_url=SecretStr(smtp.url()), smtp_ca_file=smtp.ca_file, email_from="ops@ubertruck.in",
                  email_to=["oncall@ubertruck.in"]).save(f"{env}-alerts", overwrite=True)
    limits = CheckThresholds.load(f"{env}-thresholds").model_copy(
        update={"watch_interval_seconds": 1, "watch_rounds_to_alert": 3, "disk_paths": ["/"],
                # the killed service is the incident wanted: a busy test machine's CPU is not one
                "cpu_high_pct": 100, "cpu_medium_pct": 100, "memory_high_pct": 100})
    watcher = Watch(env, load_environment(env), limits)
    since = time.time()
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    posts_before = len(slack.posts)

    def kill_and_restore(wait_for_down, wait_for_back) -> None:
        booking = next(a for a in pm2.list_apps(app) if a.service == "booking-service")
        pm2.delete_apps(app, [booking.pm_id])
        try:
            wait_for_down()
        finally:
            pm2.hand_over.fn(app, "booking-service", "v1.2.0", Path(app.app_root) / "ecosystem.config.js", config=1)
        wait_for_back()

    def said(kind: str, count: int):
        return lambda: _wait_until(lambda: sum(1 for t in watcher.said if t.kind == kind
                                               and t.target == "health booking-service") >= count, 60,
                                   f"watch never said {kind} #{count}: {watcher.said}")

    try:
        _wait_until(lambda: watcher.rounds >= 1, 30, "no first round")
        assert watcher.said == [], watcher.said            # a healthy system: nothing to say
        kill_and_restore(lambda: _wait_for_text(slack, "health booking-service is DOWN", 60),
                         lambda: _wait_for_text(slack, "health booking-service recovered after", 60))
        _wait_until(lambda: len(pagerduty.events) >= 2, 15, f"no resolve: {pagerduty.actions()}")
        (trigger, first), (resolve, again) = pagerduty.actions()
        assert (trigger, resolve, first) == ("trigger", "resolve", again), pagerduty.actions()
        page = pagerduty.events[0]["payload"]
        assert page["severity"] == "critical" and page["custom_details"]["environment"] == env
        assert page["custom_details"]["target"] == "health booking-service"
        assert page["custom_details"]["rule"] == "service down" and page["custom_details"]["since"]
        assert pagerduty.refused == [] and smtp.messages == [], (pagerduty.refused, smtp.messages)
        downs = [t for t in slack.texts()[posts_before:] if "booking-service is DOWN" in t]
        assert len(downs) == 1, downs

        # Planned work: silenced since 30 s ago for one minute, so it ends 30 s from now.
        made = silences.make(env, "1m", "booking-service upgrade", "booking-service",
                             now=datetime.now(UTC) - timedelta(seconds=30))
        _wait_for_text(slack, "alerts silenced for booking-service", 5)
        quiet_from, pages_before = len(slack.posts), len(pagerduty.events)
        kill_and_restore(said("down", 2), said("recovered", 2))
        assert len(pagerduty.events) == pages_before and smtp.messages == [], pagerduty.actions()
        assert not [t for t in slack.texts()[quiet_from:] if "booking-service" in t and "silence" not in t], \
            slack.texts()[quiet_from:]
        _wait_until(lambda: datetime.now(UTC) > made.ends, 45, "the silence did not end")
        kill_and_restore(said("down", 3), said("recovered", 3))
        downs = [t for t in slack.texts()[posts_before:] if "booking-service is DOWN" in t]
        assert len(downs) == 2, downs
        _wait_until(lambda: len(pagerduty.events) >= pages_before + 2, 15, f"{pagerduty.actions()}")
        third = [key for action, key in pagerduty.actions() if action == "trigger"]
        assert len(third) == 2 and third[1] != first, pagerduty.actions()       # a new incident, a new page
        assert any("silence of booking-service expired" in t for t in slack.texts()), slack.texts()[-6:]

        # A high finding (memory over 1 %): email and Slack, no page.
        pages_before = len(pagerduty.events)
        watcher.limits.memory_high_pct = 1
        _wait_until(lambda: smtp.messages, 30, "no email for a high finding")
        watcher.limits.memory_high_pct = 100
        assert smtp.messages[0]["Subject"].startswith(f"[{env}] HIGH: memory"), smtp.messages[0]["Subject"]
        assert smtp.envelopes[0] == ("ops@ubertruck.in", ["oncall@ubertruck.in"]) and smtp.logins == ["alerts"]
        _wait_for_text(slack, "HIGH: memory is over its limit", 10)
        assert len(pagerduty.events) == pages_before, pagerduty.actions()
    finally:
        watcher.stop()
        thread.join(timeout=30)
        pagerduty.stop()
        smtp.stop()
        AlertChannels().save(f"{env}-alerts", overwrite=True)
    everything = " ".join(slack.texts()) + " ".join(str(m) for m in smtp.messages) + \
        " ".join(json.dumps(e["payload"]) for e in pagerduty.events if "payload" in e)
    assert routing_key not in everything and "smtp-sentinel-pw" not in everything
    EventsWorker.drain_all()
    deadline = time.monotonic() + 30
    target = resource_id(env, "health booking-service")
    while True:
        # built each time: the filter's `until` is the moment it is made
        wanted = EventFilter(event=EventNameFilter(prefix=["ubertruck.watch."]),
                             occurred=EventOccurredFilter(since=datetime.fromtimestamp(since - 5, UTC)))
        with get_client(sync_client=True) as client:
            events = [e for e in client.read_events(filter=wanted, limit=50).events if e.resource.id == target]
        if len(events) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(1)
    downs = sorted((e for e in events if e.event == "ubertruck.watch.down"), key=lambda e: e.occurred)
    assert [(e.payload["paged"], e.payload["silenced_by"]) for e in downs] == [
        (True, None), (False, made.id), (True, None)], [e.payload for e in downs]

    # The next morning: the night's incidents and failed runs of this environment only, with how long
    # each lasted and whether someone was paged.
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.flows.rollback import rollback

    assert rollback(environment=env, to="v9.9.9", return_state=True).is_failed()
    assert nightly_backup(environment="another-environment", return_state=True).is_failed()
    overnight = results_of(morning_checklist(environment=env, return_state=True))["overnight alerts"]["detail"]
    assert overnight.count("health booking-service down at") == 3, overnight
    assert "(paged)" in overnight and "(silenced)" in overnight and "memory down at" in overnight, overnight
    assert "rollback/" in overnight and "Failed" in overnight and "nightly-backup" not in overnight, overnight


def _wait_until(condition, seconds: float, message: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(message)


def _wait_for_text(slack, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for post in list(slack.posts):
            if text in post.get("text", ""):
                return post["text"]
        time.sleep(0.2)
    raise AssertionError(f"no Slack post with {text!r} within {seconds:.0f} s: {[p.get('text') for p in slack.posts[-5:]]}")


def test_the_watch_command_starts_says_what_it_watches_and_stops_cleanly_on_sigterm(live):
    """The command an operator runs as a service (the watcher itself is tested above, in-process)."""
    import os
    import signal
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    env = live["env"]
    command = subprocess.Popen([sys.executable, "-m", "ubertruck_ops.deployments.cli", "watch", "--environment", env],
                               env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = command.stdout.readline()
        assert first.startswith(f"watching {env}: ") and "every 30 s, down after 3 failing rounds" in first, \
            first + command.stderr.read() if command.poll() is not None else first
        time.sleep(8)          # inside the first round (5 s probes) or the 30 s wait after it
        sent = time.monotonic()
        command.send_signal(signal.SIGTERM)
        out, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 0, err[-3000:]
    assert time.monotonic() - sent < 10, "the watch took too long to stop"
    assert "stopped after 1 round; down now: nothing" in out, out + err[-2000:]


def test_the_morning_checklist_reads_no_error_log_through_a_link_or_a_fifo_and_says_what_it_refused(live, tmp_path):
    """Issue 22, item 13: whoever can write the log folder plants `x-error.log -> a secret file`; the
    checklist used to post the target's last line to Slack."""
    import os

    env, app, slack = live["env"], live["app"], live["slack"]
    secret = tmp_path / "secret.txt"
    secret.write_text("root:$6$SECRET-HASH-LINE:19000:0:99999:7:::\n")
    logs = Path(app.logs)
    planted = [logs / "route-service-evil-error.log", logs / "fifo-error.log"]
    planted[0].symlink_to(secret)
    os.mkfifo(planted[1])
    try:
        posts = len(slack.posts)
        results = results_of(morning_checklist(environment=env, return_state=True))
    finally:
        for path in planted:
            path.unlink()
    row = results["error logs"]
    assert row["status"] == "warn", row
    assert "not read (only regular files, never through a link): fifo-error.log (not a regular file), " \
           "route-service-evil-error.log (a symbolic link)" in row["detail"], row["detail"]
    said = json.dumps(results) + json.dumps(slack.posts[posts:])
    assert "SECRET-HASH-LINE" not in said
