"""`ubertruck-ops watch`: the guide's health checks every 30 s (7.1) and its alert rules (7.3)
between checklists, long-lived beside the flows and independent of them.

Every round runs, at once and each with a 5 s deadline: every service's /health, /health/ready
and /health/live; the database; Redis and its queue backlog; the disks; CPU and memory; the
error rate and p95 response time from the nginx access log. A target failing
`watch_rounds_to_alert` rounds in a row (3; a medium finding, CPU > 80%, after
`watch_medium_minutes`, 10) is an incident: one Slack notice (critical, high or medium), a
reminder every `watch_remind_minutes` (30) while it lasts, a recovery notice with its duration.
Every change is also a Prefect event (`ubertruck.watch.down|reminder|recovered`). Decisions are
core/watch.py's; the checks are the checklists' own (tasks/checks/).

Where the database is not RDS, every round also reads our replication slot (retained WAL, its
consumer: core/wal_safety.py), and a thread of its own lists the WAL archive at most every
`lag_period` seconds to measure how far it is behind the server (a listing of S3 takes seconds; a
round must not wait for it); each such measurement counts as one round of its target.

The watcher is watched too: its own dead man's switch (the slack block's watch_ping_url) hears
/start, a success at most every `ping_period` seconds while rounds complete, and /fail while they
fail (a round that raised, or a Slack notice it owed that Slack did not take).
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import alerts, checks, notices
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.text import one_line
from ubertruck_ops.core.wal_safety import LAG_CHECK_SECONDS, WAL_SLOT, lag_check_due
from ubertruck_ops.core.watch import (
    TRAFFIC_WINDOW,
    Heartbeat,
    Incidents,
    Transition,
    counts_against,
    medium_rounds,
    traffic_verdict_for,
)
from ubertruck_ops.log import logger
from ubertruck_ops.operations.alerts import Alerter
from ubertruck_ops.tasks.access_log import AccessLog
from ubertruck_ops.tasks.checks import cache, database, host, replication, run_checks, services
from ubertruck_ops.tasks.events import emit_watch_event
from ubertruck_ops.tasks.notify import ping_check
from ubertruck_ops.tasks.repository import open_repository

PROBE_SECONDS = 5          # the guide's 7.1 timeout
SILENCE_CHECK_SECONDS = 15  # how often a running watch looks for silences that have ended


class Watch:
    """The watcher of one environment; `run()` until `stop()`."""

    def __init__(self, environment: str, env: Environment, limits: CheckThresholds | None = None,
                 ping_period: float = 60.0, lag_period: float = LAG_CHECK_SECONDS):
        self.environment, self.env = environment, env
        self.limits = limits or env.thresholds
        self.incidents = Incidents(self.limits.watch_rounds_to_alert, self.limits.watch_remind_minutes * 60,
                                   medium_rounds(self.limits.watch_medium_minutes, self.limits.watch_interval_seconds))
        self.access_log = AccessLog(self.limits.access_log) if self.limits.access_log else None
        self.requests: list = []
        self.unreadable: list[datetime] = []      # when each unreadable access-log line was read
        self.rounds = 0
        self.said: list[Transition] = []
        self.heartbeat = Heartbeat(ping_period)
        self.undelivered: list[str] = []      # this round's notices a channel did not take
        self.alerter = Alerter(environment, env.slack, env.alerts)
        self.open_alerts: dict[str, tuple[alerts.Alert, bool]] = {}     # target -> its alert, whether it paged
        self._silences_checked: float | None = None
        self._stopping = threading.Event()
        self._repo = None
        self._lag = _Background("wal archive lag", self._measure_lag, lag_period) if env.rds is None else None

    def plan(self) -> dict:
        env, limits = self.env, self.limits
        plan: dict = {"database reachable": lambda: database.reachable(env.database),
                      "cpu": lambda: host.cpu(limits), "memory": lambda: host.memory(limits)}
        for path in limits.disk_paths:
            plan[f"disk {path}"] = lambda path=path: host.disk(path, limits)
        if env.app is not None:
            for service in env.app.services:
                plan[f"health {service}"] = lambda s=service: services.service_health(env.app, s, PROBE_SECONDS)
        if env.redis is not None:
            plan["redis reachable"] = lambda: cache.reachable(env.redis)
            if limits.queue_keys:
                plan["queue backlog"] = lambda: cache.queue_backlog(env.redis, limits)
        if self.access_log is not None:
            plan["error rate and response time"] = self._traffic
        if env.rds is None:     # RDS has no slot of ours
            plan[f"wal slot {WAL_SLOT}"] = lambda: replication.wal_slot(env.database, limits, self.environment,
                                                                         self._repo_or_none(), keep_size=False)
        return plan

    @property
    def repo(self):
        if self._repo is None:
            self._repo = open_repository(self.env.repository)
        return self._repo

    def _repo_or_none(self):
        """The repository, for naming a lost slot's hole; None when it cannot be opened (the slot's
        verdict must not depend on it)."""
        try:
            return self.repo
        except Exception as exc:  # noqa: BLE001 - said in the log; the lag check reports the repository
            logger().warning("could not open the repository: %s", one_line(exc))
            return None

    def _measure_lag(self) -> CheckResult:
        return replication.archive_lag(self.env.database, self.repo, self.limits, self.environment)

    def _traffic(self) -> CheckResult:
        now = datetime.now(UTC)
        self.requests = [r for r in self.requests + self.access_log.read_new() if now - r.at <= TRAFFIC_WINDOW]
        # An unreadable line has no time of its own: it counts from when it was read.
        self.unreadable = [t for t in self.unreadable + [now] * self.access_log.unparsed_last
                           if now - t <= TRAFFIC_WINDOW]
        status, severity, value, detail = traffic_verdict_for(self.limits, self.requests, now,
                                                              unreadable=len(self.unreadable))
        name = "error rate and response time"
        if status == "critical":
            return checks.critical(name, value, "guide 7.3", detail)
        if status == "warn":
            return checks.warn(name, value, "guide 7.3", detail, severity)
        return checks.ok(name, value, "guide 7.3", detail)

    def round(self) -> list[Transition]:
        """Run every check once; post and emit what changed; return it."""
        self.undelivered = []
        results = run_checks(self.plan(), PROBE_SECONDS + 1)
        now = time.monotonic()
        if self._lag is not None:
            results += self._lag.poll(now)
        self.rounds += 1
        said = []
        for result in results:
            bad, severity = counts_against(result.status, result.severity)
            transition = self.incidents.observe(result.name, bad, severity, result.detail, now)
            if transition is not None:
                said.append(transition)
                self._tell(transition)
        self.said += said
        if self._silences_checked is None or now - self._silences_checked >= SILENCE_CHECK_SECONDS:
            self._silences_checked = now       # a silence's end is announced when it comes, not at the next alert
            self.alerter.announce_ended_silences()
        return said

    def _tell(self, t: Transition) -> None:
        """Send one transition where its severity goes (core/alerts.py's table, silences honoured) and
        record it as a Prefect event with who heard it. A down opens an incident (its own dedup key:
        a later kill is a new page), a reminder goes to Slack only, a recovery resolves the page."""
        (logger().error if t.kind != "recovered" else logger().info)(
            "%s: %s %s (%s)", t.target, t.kind, t.severity, t.detail)
        payload = notices.watch_transition(self.environment, t.kind, t.target, t.severity, t.detail, t.seconds)
        now = datetime.now(UTC)
        opened = self.open_alerts.get(t.target)
        if t.kind == "down" or opened is None:
            since = now - timedelta(seconds=t.seconds)
            alert = alerts.Alert(self.environment, "watch", t.target, alerts.watch_rule(t.target, t.severity),
                                 t.severity, t.detail[:200], since, _ui_link(), t.detail,
                                 key=alerts.dedup_key(self.environment, "watch", t.target, since))
            opened = (alert, False)
        alert, paged = opened
        if t.kind == "recovered":
            delivery = self.alerter.resolve(alert, payload, t.seconds, paged, now)
            self.open_alerts.pop(t.target, None)
        elif t.kind == "reminder":
            delivery = self.alerter.send(replace(alert, severity=alerts.MEDIUM), payload, now)   # Slack only
        else:
            delivery = self.alerter.send(alert, payload, now)
            self.open_alerts[t.target] = (alert, delivery.paged)
        self.undelivered += [f"{t.target} {t.kind} ({channel})" for channel in delivery.failed]
        emit_watch_event(self.environment, t.kind, t.target, t.severity, t.detail, t.seconds,
                         {**asdict(delivery), "paged": delivery.paged or (t.kind != "down" and paged),
                          "dedup_key": alert.dedup})

    def ping(self, kind: str, message: str) -> str | None:
        """Tell the watcher's own dead man's switch (never raises; no URL: nothing)."""
        return ping_check(self.env.slack.watch_ping_url, kind, f"watch {self.environment}: {message}")

    def run(self) -> None:
        """Round after round, `watch_interval_seconds` apart (from each round's start), until stop()."""
        self.ping("start", f"started, rounds every {self.limits.watch_interval_seconds:g} s")
        while not self._stopping.is_set():
            started = time.monotonic()
            failure = ""
            try:
                self.round()
                if self.undelivered:
                    failure = f"{len(self.undelivered)} notice(s) not delivered: {', '.join(self.undelivered)}"
            except Exception as exc:  # noqa: BLE001 - one bad round is logged; the watch goes on
                logger().exception("a watch round failed: %s", exc)
                # The type only: a message may carry a URL or a value we must not send to a third party.
                failure = f"round {self.rounds + 1} failed: {type(exc).__name__} (see the watch's log)"
            kind = self.heartbeat.after_round(bool(failure), time.monotonic())
            if kind is not None:
                self.ping(kind, failure or f"{self.rounds} round(s) complete, down now: "
                                           f"{', '.join(self.incidents.down()) or 'nothing'}")
            self._stopping.wait(max(0.0, self.limits.watch_interval_seconds - (time.monotonic() - started)))
        if self.access_log is not None:
            self.access_log.close()

    def stop(self) -> None:
        self._stopping.set()


def _ui_link() -> str:
    """The Prefect UI's Event Feed (where every watch transition is), when a UI address is known."""
    from prefect.settings import PREFECT_UI_URL

    base = PREFECT_UI_URL.value()
    return f"{base.rstrip('/')}/events" if base else ""


class _Background:
    """One check measured in a thread of its own, at most every `period` seconds (core decides);
    each measurement is handed out once, to the round that follows it."""

    def __init__(self, name: str, check, period: float):
        self.name, self.check, self.period = name, check, period
        self._fresh: list[CheckResult] = []
        self._started: float | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def poll(self, now: float) -> list[CheckResult]:
        """Return the measurement made since the last poll (none or one); start the next when due."""
        with self._lock:
            fresh, self._fresh = self._fresh, []
        if (self._thread is None or not self._thread.is_alive()) and lag_check_due(self._started, now, self.period):
            self._started = now
            # In a copy of this context: the Prefect settings (API, auth) live in context variables.
            self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._measure,),
                                            name=f"watch {self.name}", daemon=True)
            self._thread.start()
        return fresh

    def _measure(self) -> None:
        clock = time.monotonic()
        try:
            result = self.check()
        except Exception as exc:  # noqa: BLE001 - a check that cannot measure says so, it never passes
            result = checks.error(self.name, one_line(exc))
        result.seconds = time.monotonic() - clock
        with self._lock:
            self._fresh = [result]
