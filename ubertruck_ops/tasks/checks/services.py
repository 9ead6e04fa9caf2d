"""Checks over HTTP and PM2: every service's health endpoints, response times, extra endpoints,
PM2 status and restarts."""

from __future__ import annotations

import statistics
import time

import httpx

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CRITICAL, CheckResult
from ubertruck_ops.tasks import health, pm2


def service_health(app: AppHost, service: str, timeout: float) -> CheckResult:
    """/health, /health/ready and /health/live of one service: critical when any fails."""
    name = f"health {service}"
    probe = health.probe(service, app.services[service], timeout=timeout)
    if probe.health is None:
        return CheckResult(name, CRITICAL, "down", "2xx", f"no answer on port {app.services[service]}: {probe.error}",
                           "critical")
    bad = [f"{path} {code}" for path, code in (("/health", probe.health), ("/health/ready", probe.ready),
                                                ("/health/live", probe.live)) if code is None or not 200 <= code < 300]
    if bad:
        return CheckResult(name, CRITICAL, ", ".join(bad), "2xx", f"{service} answers {', '.join(bad)}", "critical")
    return checks.ok(name, probe.version, "2xx", f"{service} {probe.version}: healthy, ready, live")


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
    name = f"endpoint {url}"
    try:
        reply = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        return CheckResult(name, CRITICAL, "down", "2xx", f"{type(exc).__name__}: {exc}"[:200], "critical")
    if not 200 <= reply.status_code < 300:
        return CheckResult(name, CRITICAL, reply.status_code, "2xx", f"answered {reply.status_code}", "critical")
    return checks.ok(name, reply.status_code, "2xx", f"{reply.elapsed.total_seconds() * 1000:.0f} ms")


def pm2_status(app: AppHost, limits: CheckThresholds, restarts_before: dict[str, int]) -> tuple[list[CheckResult], dict]:
    """Every service online under PM2 (critical otherwise) and its restarts since the last run
    (medium); return the results and the restart counts to remember."""
    apps = pm2.list_apps(app)
    now = {a.name: a.restarts for a in apps}
    results = []
    for service in app.services:
        mine = [a for a in apps if a.service == service]
        name = f"pm2 {service}"
        if not mine or any(a.status != "online" for a in mine):
            state = ", ".join(f"{a.name} {a.status}" for a in mine) or "not running"
            results.append(CheckResult(name, CRITICAL, state, "online", f"{service}: {state}", "critical"))
            continue
        new = sum(a.restarts - restarts_before.get(a.name, 0) for a in mine if a.restarts > restarts_before.get(a.name, 0))
        results.append(checks.above(name, new, [(limits.restarts_medium, checks.WARN, "medium")], " restarts",
                                    f"{', '.join(a.name for a in mine)} online, {new} restart(s) since the last check"))
    return results, now
