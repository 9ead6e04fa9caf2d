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
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks, notices
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.watch import (TRAFFIC_WINDOW, Incidents, Transition, counts_against, medium_rounds,
                                      traffic_verdict)
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.access_log import AccessLog
from ubertruck_ops.tasks.checks import cache, database, host, run_checks, services
from ubertruck_ops.tasks.events import emit_watch_event
from ubertruck_ops.tasks.notify import notify

PROBE_SECONDS = 5          # the guide's 7.1 timeout


class Watch:
    """The watcher of one environment; `run()` until `stop()`."""

    def __init__(self, environment: str, env: Environment, limits: CheckThresholds | None = None):
        self.environment, self.env = environment, env
        self.limits = limits or env.thresholds or CheckThresholds()
        self.incidents = Incidents(self.limits.watch_rounds_to_alert, self.limits.watch_remind_minutes * 60,
                                   medium_rounds(self.limits.watch_medium_minutes, self.limits.watch_interval_seconds))
        self.access_log = AccessLog(self.limits.access_log) if self.limits.access_log else None
        self.requests: list = []
        self.rounds = 0
        self.said: list[Transition] = []
        self._stopping = threading.Event()

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
        return plan

    def _traffic(self) -> CheckResult:
        now = datetime.now(timezone.utc)
        self.requests = [r for r in self.requests + self.access_log.read_new() if now - r.at <= TRAFFIC_WINDOW]
        status, severity, value, detail = traffic_verdict(
            self.requests, now, error_critical_pct=self.limits.error_rate_critical_pct,
            error_high_pct=self.limits.error_rate_high_pct, p95_critical_s=self.limits.response_time_critical_s,
            p95_high_s=self.limits.response_time_medium_s)
        name = "error rate and response time"
        if status == "critical":
            return checks.critical(name, value, "guide 7.3", detail)
        if status == "warn":
            return checks.warn(name, value, "guide 7.3", detail, severity)
        return checks.ok(name, value, "guide 7.3", detail)

    def round(self) -> list[Transition]:
        """Run every check once; post and emit what changed; return it."""
        results = run_checks(self.plan(), PROBE_SECONDS + 1)
        self.rounds += 1
        now = time.monotonic()
        said = []
        for result in results:
            bad, severity = counts_against(result.status, result.severity)
            transition = self.incidents.observe(result.name, bad, severity, result.detail, now)
            if transition is not None:
                said.append(transition)
                self._tell(transition)
        self.said += said
        return said

    def _tell(self, t: Transition) -> None:
        (logger().error if t.kind != "recovered" else logger().info)(
            "%s: %s %s (%s)", t.target, t.kind, t.severity, t.detail)
        notify.fn(self.env.slack, notices.watch_transition(self.environment, t.kind, t.target, t.severity, t.detail,
                                                        t.seconds))
        emit_watch_event(self.environment, t.kind, t.target, t.severity, t.detail, t.seconds)

    def run(self) -> None:
        """Round after round, `watch_interval_seconds` apart (from each round's start), until stop()."""
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self.round()
            except Exception as exc:  # noqa: BLE001 - one bad round is logged; the watch goes on
                logger().exception("a watch round failed: %s", exc)
            self._stopping.wait(max(0.0, self.limits.watch_interval_seconds - (time.monotonic() - started)))
        if self.access_log is not None:
            self.access_log.close()

    def stop(self) -> None:
        self._stopping.set()
