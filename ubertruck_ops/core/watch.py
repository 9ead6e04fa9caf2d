"""What `ubertruck-ops watch` decides, round after round (pure):
- when a target is down (N failing rounds in a row), when to remind, when it recovered;
- error rate and response time from the nginx access log (the `ubertruck_timed` log_format).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ubertruck_ops.core.checks import CRITICAL, ERROR, WARN

# The guide's nginx with $request_time appended: the access log `watch` reads. In nginx.conf (http {}):
#   log_format ubertruck_timed '$remote_addr - $remote_user [$time_local] "$request" $status '
#                              '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time';
#   access_log /var/log/nginx/ubertruck-access.log ubertruck_timed;
LOG_FORMAT_NAME = "ubertruck_timed"
LOG_FORMAT = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
              '"$http_referer" "$http_user_agent" $request_time')
TRAFFIC_WINDOW = timedelta(minutes=5)     # the guide's 7.3 error-rate and response-time window
# Anchored on both ends. nginx escapes `"` and `\` (as \x22, \x5C) in every field but leaves `[` and
# `]` alone, so $remote_user - what a client's Authorization header says - may hold "[...]": the time
# is the bracketed stamp followed by the request's opening quote, which no field before it can
# contain, and the quoted fields after it cannot hold a quote either.
_LINE = re.compile(r'^\S+ - .*? \[(?P<time>\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
                   r'"[^"]*" (?P<status>\d{3}) \S+ "[^"]*" "[^"]*" (?P<seconds>\d+(?:\.\d+)?)\s*$')


@dataclass(frozen=True)
class Transition:
    kind: str              # down | reminder | recovered
    target: str
    severity: str          # critical | high | medium (of the failure)
    detail: str
    seconds: float = 0.0   # how long it has been down (reminder, recovered)


@dataclass
class _State:
    failures: int = 0
    down_since: float | None = None
    reminded_at: float = 0.0
    severity: str = ""
    detail: str = ""


class Incidents:
    """Targets' states across rounds: a target is down after `rounds_to_alert` failing rounds in a
    row (`medium_rounds` when this round's finding is only medium), one notice per incident,
    reminded every `remind_seconds` while down, recovered at its first passing round after that
    (with how long it was down)."""

    def __init__(self, rounds_to_alert: int = 3, remind_seconds: float = 1800, medium_rounds: int | None = None):
        self.rounds_to_alert, self.remind_seconds = rounds_to_alert, remind_seconds
        self.medium_rounds = max(rounds_to_alert, medium_rounds or rounds_to_alert)
        self._states: dict[str, _State] = {}

    def observe(self, target: str, failing: bool, severity: str, detail: str, now: float) -> Transition | None:
        """Record one round's result of `target` (monotonic seconds `now`); return what to say, if anything."""
        state = self._states.setdefault(target, _State())
        if not failing:
            was_down = state.down_since
            self._states[target] = _State()
            if was_down is not None:
                return Transition("recovered", target, state.severity, detail, now - was_down)
            return None
        state.failures += 1
        state.detail = detail
        if state.down_since is None:
            if state.failures < (self.medium_rounds if severity == "medium" else self.rounds_to_alert):
                return None
            state.down_since = state.reminded_at = now
            state.severity = severity
            return Transition("down", target, severity, detail)
        if now - state.reminded_at >= self.remind_seconds:
            state.reminded_at = now
            return Transition("reminder", target, state.severity, detail, now - state.down_since)
        return None

    def down(self) -> list[str]:
        return sorted(t for t, s in self._states.items() if s.down_since is not None)


@dataclass(frozen=True)
class Request:
    at: datetime
    status: int
    seconds: float


def parse_access_line(line: str) -> Request | None:
    """Given one line of the `ubertruck_timed` access log, return the request, or None for a line
    in another format (counted by the caller, never guessed at)."""
    found = _LINE.search(line)
    if found is None:
        return None
    try:
        at = datetime.strptime(found["time"], "%d/%b/%Y:%H:%M:%S %z")
    except ValueError:
        return None
    return Request(at, int(found["status"]), float(found["seconds"]))


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def traffic_verdict(requests: list[Request], now: datetime, window: timedelta = TRAFFIC_WINDOW,
                    error_critical_pct: float = 10, error_high_pct: float = 5, p95_critical_s: float = 5,
                    p95_high_s: float = 2, min_requests: int = 20, unreadable: int = 0,
                    unreadable_pct: float = 5) -> tuple[str, str, str, str]:
    """Given the requests seen and how many lines of the last `window` could not be read, return
    (status, severity, value, detail) over that window: critical above `error_critical_pct` 5xx or a
    p95 above `p95_critical_s`, failing "high" above the high limits, "ok" otherwise or with fewer
    than `min_requests` readable requests (too few to judge).

    An unreadable line counts as a failed request (hiding requests can never lower the error rate).
    More than `unreadable_pct` of the lines unreadable (3 at least) is said in the detail and fails
    "high" at least, naming the format to configure; with too few readable lines to judge, that is
    the whole verdict (a log in another format, e.g. nginx's default `combined`)."""
    recent = [r for r in requests if now - window <= r.at <= now]
    minutes = f"{window.total_seconds() / 60:g} min"
    lines = len(recent) + unreadable
    blind = unreadable >= 3 and 100 * unreadable / max(lines, 1) > unreadable_pct
    format_note = (f"{unreadable} of {lines} lines in the last {minutes} are not in the {LOG_FORMAT_NAME} format: "
                   f"set log_format {LOG_FORMAT_NAME} '{LOG_FORMAT}'; and access_log <path> {LOG_FORMAT_NAME}; "
                   "in nginx")
    if len(recent) < min_requests:
        if blind:
            return "warn", "high", f"{unreadable} unreadable lines", format_note
        return "ok", "", f"{len(recent)} requests", f"{len(recent)} requests in the last {minutes}: too few to judge"
    errors = 100 * (sum(1 for r in recent if r.status >= 500) + unreadable) / lines
    slow = p95([r.seconds for r in recent])
    value = f"{errors:.1f}% 5xx, p95 {slow:.2f} s"
    detail = f"{value} over {lines} requests in the last {minutes}" + \
        (f" ({unreadable} unreadable line(s) counted as failed)" if unreadable else "") + \
        (f"; {format_note}" if blind else "")
    if errors > error_critical_pct or slow > p95_critical_s:
        return "critical", "critical", value, detail
    if errors > error_high_pct or slow > p95_high_s or blind:
        return "warn", "high", value, detail
    return "ok", "", value, detail


def traffic_verdict_for(limits, requests: list[Request], now: datetime, window: timedelta = TRAFFIC_WINDOW,
                        unreadable: int = 0) -> tuple[str, str, str, str]:
    """traffic_verdict with the thresholds block's lines (`limits`: error rate, response time, unreadable
    share): the one judgment `watch` and a deploy's bake window both make."""
    return traffic_verdict(requests, now, window=window, error_critical_pct=limits.error_rate_critical_pct,
                           error_high_pct=limits.error_rate_high_pct, p95_critical_s=limits.response_time_critical_s,
                           p95_high_s=limits.response_time_medium_s, unreadable=unreadable,
                           unreadable_pct=limits.unreadable_log_lines_pct)


def counts_against(status: str, severity: str) -> tuple[bool, str]:
    """Whether a round's check result (core.checks status and severity) counts against its target,
    and at which severity: critical, or a check that could not measure, is critical; a warning of
    high severity (CPU or memory > 90%, queue, error rate 5-10%, p95 > 2 s) is high, of medium
    severity (CPU > 80%) medium; a low one (disk > 70% used) passes: the daily checklists say it."""
    if status in (CRITICAL, ERROR):
        return True, "critical"
    if status == WARN and severity in ("high", "medium"):
        return True, severity
    return False, ""


def medium_rounds(medium_minutes: float, interval_seconds: float) -> int:
    """How many rounds `interval_seconds` apart make `medium_minutes` (at least one)."""
    return max(1, math.ceil(medium_minutes * 60 / interval_seconds))


class Heartbeat:
    """When `watch` pings its dead man's switch after a round: a success at most every `period`
    seconds while rounds complete, a failure at once when a round fails (then at most every
    `period` while they keep failing), and whichever comes first after a change."""

    def __init__(self, period: float = 60.0):
        self.period = period
        self._last: tuple[str, float] | None = None

    def after_round(self, failed: bool, now: float) -> str | None:
        """Given whether the round failed and monotonic `now`, return the ping to send (success |
        fail) or None."""
        kind = "fail" if failed else "success"
        if self._last is not None and self._last[0] == kind and now - self._last[1] < self.period:
            return None
        self._last = (kind, now)
        return kind
