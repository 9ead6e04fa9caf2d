"""What a deploy checks once its release is live, before it counts as done: the smoke URLs, then the
bake window. Either failing raises, and the switch puts the previous release back (release_switch)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core.text import human_seconds
from ubertruck_ops.core.watch import TRAFFIC_WINDOW, traffic_verdict_for
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.access_log import AccessLog
from ubertruck_ops.tasks.smoke import smoke_test

BAKE_POLL_SECONDS = 2.0


class BakeFailed(RuntimeError):
    """The release's traffic passed the watcher's critical line during the bake window."""


def bake_minutes_for(app: AppHost, asked: float | None) -> float:
    """The bake window of this deploy: the `bake_minutes` parameter when given, else the app block's.
    Raise ValueError on a negative or non-numeric value."""
    minutes = app.bake_minutes if asked is None else asked
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or minutes < 0:
        raise ValueError(f"bake_minutes must be a number of minutes, 0 or more (0 turns the bake off), not {minutes!r}")
    return float(minutes)


def checks_after_go_live(app: AppHost, limits: CheckThresholds, bake_minutes: float, step):
    """Return the check a switch runs once the release is live (None when there is nothing to check):
    every smoke URL 2xx within the block's timeout, then `bake_minutes` of the access log under the
    watcher's rule and critical thresholds. The access log is followed from the moment the check
    starts (the go-live)."""
    bake_log = limits.access_log if bake_minutes > 0 else None
    if not app.smoke_urls and bake_log is None:
        if bake_minutes > 0:
            logger().info("no bake window: WATCH_ACCESS_LOG is not set (the bake reads the nginx access log)")
        return None

    def check() -> str:
        said = []
        log = AccessLog(bake_log) if bake_log else None
        if log is not None:
            log.read_new()                       # from now on: the new release's traffic
        started = datetime.now(UTC)
        if app.smoke_urls:
            step(f"smoke test {len(app.smoke_urls)} URL(s)")
            smoke_test(app.smoke_urls, app.smoke_timeout_seconds)
            said.append(f"smoke test of {len(app.smoke_urls)} URL(s) passed")
        if log is not None:
            step(f"bake for {bake_minutes:g} min")
            said.append(bake(log, limits, bake_minutes, started))
        return "; ".join(said)

    return check


def bake(log: AccessLog, limits: CheckThresholds, minutes: float, started: datetime) -> str:
    """Read the access log for `minutes`, judging the requests since `started` (at most the watcher's
    window) as watch does; return what the window saw. Raise BakeFailed, with the numbers, as soon as
    they pass the critical line."""
    deadline = time.monotonic() + minutes * 60
    requests, unreadable = [], []
    while True:
        time.sleep(max(0.0, min(BAKE_POLL_SECONDS, deadline - time.monotonic())))
        now = datetime.now(UTC)
        requests += log.read_new()
        unreadable += [now] * log.unparsed_last
        window = max(min(now - started, TRAFFIC_WINDOW), timedelta(seconds=1))
        requests = [r for r in requests if now - r.at <= window]
        unreadable = [t for t in unreadable if now - t <= window]
        verdict = traffic_verdict_for(limits, requests, now, window, len(unreadable))
        if verdict[0] == "critical":
            raise BakeFailed(f"the bake window saw {verdict[3]} after {human_seconds((now - started).total_seconds())} "
                             f"(critical: over {limits.error_rate_critical_pct:g}% 5xx or a p95 over "
                             f"{limits.response_time_critical_s:g} s)")
        if time.monotonic() >= deadline:
            seen = verdict[3] if os.path.exists(log.path) else f"the access log {log.path} does not exist: nothing judged"
            return f"baked {minutes:g} min: {seen}"
