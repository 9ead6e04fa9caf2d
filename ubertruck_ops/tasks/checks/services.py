"""Checks over HTTP and PM2: every service's health endpoints, response times, extra endpoints,
PM2 status and restarts."""

from __future__ import annotations

import statistics
import time

import httpx

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.tasks import health, pm2


def service_health(app: AppHost, service: str, timeout: float) -> CheckResult:
    """/health, /health/ready and /health/live of one service: critical when any fails."""
    port = app.services[service]
    return checks.service_health(service, port, health.probe(service, port, timeout=timeout))


def response_times(app: AppHost, limits: CheckThresholds, samples: int = 5, timeout: float = 10) -> CheckResult:
    """The slowest service's median response time over a few requests, against the guide's 2 s / 5 s."""
    medians = {}
    with httpx.Client(timeout=timeout, headers={"Connection": "close"}) as client:
        for service, port in app.services.items():
            spent = []
            for _ in range(samples):
                clock = time.monotonic()
                try:
                    client.get(f"http://127.0.0.1:{port}/health")
                except httpx.HTTPError:
                    spent.append(timeout)
                    continue
                spent.append(time.monotonic() - clock)
            medians[service] = statistics.median(spent)
    slowest = max(medians, key=medians.get)
    return checks.above("response times", medians[slowest], [
        (limits.response_time_critical_s, checks.CRITICAL, "critical"),
        (limits.response_time_medium_s, checks.WARN, "medium")], " s",
        f"slowest: {slowest} {medians[slowest] * 1000:.0f} ms (median of {samples})")


def endpoint(url: str, timeout: float) -> CheckResult:
    """An extra URL answers 2xx."""
    try:
        reply = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        return checks.endpoint(url, None, f"{type(exc).__name__}: {exc}")
    return checks.endpoint(url, reply.status_code, milliseconds=reply.elapsed.total_seconds() * 1000)


def pm2_status(app: AppHost, limits: CheckThresholds, restarts_before: dict[str, int]) -> tuple[list[CheckResult], dict]:
    """Every service online under PM2 (critical otherwise) and its restarts since the last run
    (medium); return the results and the restart counts to remember."""
    apps = pm2.list_apps(app)
    now = {a.name: a.restarts for a in apps}
    return checks.pm2_services(list(app.services), apps, restarts_before, limits.restarts_medium), now
