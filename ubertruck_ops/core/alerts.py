"""Who hears what: the guide's alert rules (7.3) as one routing table, used by every source (the
flows' failure notices, `watch`, the checklists, the server's automations). Pure: tasks/alerting.py
sends what these functions build.

| severity | who hears it                               | the guide's examples                              |
|----------|--------------------------------------------|---------------------------------------------------|
| critical | page (PagerDuty: phone, SMS) + Slack       | service down, database unreachable, 5xx > 10 %,   |
|          |                                            | p95 > 5 s, disk < 10 % free, failed nightly backup|
| high     | email + Slack                              | CPU/memory > 90 %, 5xx > 5 %, queue > 1000        |
| medium   | Slack                                      | CPU > 80 %, failed checklist                      |
| low      | the daily digest (email, evening checklist)| disk > 70 %, certificate < 30 days, not configured|
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

CRITICAL, HIGH, MEDIUM, LOW = "critical", "high", "medium", "low"
SEVERITIES = (CRITICAL, HIGH, MEDIUM, LOW)
PAGE, EMAIL, SLACK, DIGEST = "page", "email", "slack", "digest"

ROUTES: dict[str, tuple[str, ...]] = {
    CRITICAL: (PAGE, SLACK),
    HIGH: (EMAIL, SLACK),
    MEDIUM: (SLACK,),
    LOW: (DIGEST,),
}

# The severity of a failed (or crashed, or missing) run of each flow. A nightly backup that did not
# happen leaves the business without its restore point: someone is woken. host-release is a step of
# a deploy or rollback, whose own failure speaks for it.
FLOW_FAILURE_SEVERITY: dict[str, str] = {
    "nightly-backup": CRITICAL,
    "incremental-backup": HIGH,
    "restore": HIGH,
    "restore-drill": HIGH,
    "deploy": HIGH,
    "rollback": HIGH,
    "reconfigure": HIGH,
    "morning-checklist": MEDIUM,
    "afternoon-checklist": MEDIUM,
    "evening-checklist": MEDIUM,
    "weekly-maintenance": MEDIUM,
    "monthly-maintenance": HIGH,       # it runs the monthly restore drill
}
REPORTED_BY_PARENT = frozenset({"host-release"})
# A run that reported its own failure carries this at the end of its name: the server's failure
# automations skip it (one notice per channel per event).
REPORTED_SUFFIX = " (reported)"

# PagerDuty's Events API v2 severities.
_PAGERDUTY_SEVERITY = {CRITICAL: "critical", HIGH: "error", MEDIUM: "warning", LOW: "info"}


def flow_failure_severity(flow: str) -> str:
    """Given a flow name, return the severity of its failure (high for a flow the table does not name)."""
    return FLOW_FAILURE_SEVERITY.get(flow, HIGH)


def channels(severity: str, configured: frozenset[str] | set[str], silenced: bool = False) -> tuple[str, ...]:
    """Given an alert's severity, the channels configured (page, email, slack; the digest always is)
    and whether a silence covers it, return the channels that hear it, in the table's order.
    Raise ValueError for an unknown severity."""
    if severity not in ROUTES:
        raise ValueError(f"unknown severity {severity!r}: one of {', '.join(SEVERITIES)}")
    if silenced:
        return ()
    return tuple(c for c in ROUTES[severity] if c == DIGEST or c in configured)


_HOW_TO_CONFIGURE = {SLACK: "SLACK_WEBHOOK_URL", PAGE: "PAGERDUTY_ROUTING_KEY",
                     EMAIL: "SMTP_URL, ALERT_EMAIL_FROM and ALERT_EMAIL_TO"}


def channel_lines(configured: frozenset[str] | set[str]) -> list[str]:
    """What `blocks init` prints about the alert channels: each configured, or how to configure it."""
    return [f"alert channel {c}: configured" if c in configured else f"alert channel {c}: not configured: set "
            f"{_HOW_TO_CONFIGURE[c]} ({', '.join(s for s in SEVERITIES if c in ROUTES[s])} alerts "
            f"{'go to the other channels' if c != SLACK else 'reach only the log'})"
            for c in (PAGE, EMAIL, SLACK)]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "-"


def dedup_key(environment: str, source: str, target: str, since: datetime | None = None) -> str:
    """The key that makes one incident one page: the same environment, source and target (and, for
    `watch`, the same start) is the same incident; a resolve names the same key."""
    key = f"ubertruck/{slug(environment)}/{slug(source)}/{slug(target)}"
    return f"{key}/{since:%Y%m%dT%H%M%SZ}" if since is not None else key


def flow_dedup_key(environment: str, flow: str) -> str:
    """A flow's failures are one incident until a run of it completes (then resolved)."""
    return dedup_key(environment, "flow", flow)


def watch_rule(target: str, severity: str) -> str:
    """The rule a watch target broke, in the guide's words."""
    if target.startswith("health "):
        return "service down"
    if target == "database reachable":
        return "database unreachable"
    return "over its critical limit" if severity == CRITICAL else f"over its {severity} limit"


@dataclass(frozen=True)
class Alert:
    """One alert, whatever its source: what a page, an email and a Slack notice say."""

    environment: str
    source: str            # watch | flow | checklist | server
    target: str            # what is wrong: "health booking-service", "nightly-backup"
    rule: str              # the rule it broke: "service down", "run failed", "5xx > 10 %"
    severity: str
    value: str             # what was measured
    since: datetime
    link: str = ""         # the run or the UI
    detail: str = ""
    key: str = ""          # dedup key (default: dedup_key(environment, source, target))

    @property
    def dedup(self) -> str:
        return self.key or dedup_key(self.environment, self.source, self.target)

    def facts(self) -> dict[str, str]:
        """What every page and email carries."""
        return {"environment": self.environment, "target": self.target, "rule": self.rule,
                "severity": self.severity, "value": self.value, "since": f"{self.since:%Y-%m-%d %H:%M:%S %Z}".strip(),
                "link": self.link or "(none)", "source": self.source}

    def summary(self) -> str:
        return f"[{self.environment}] {self.severity.upper()}: {self.target}: {self.rule} ({self.value})"[:1024]


def pagerduty_trigger(alert: Alert, routing_key: str) -> dict:
    """PagerDuty Events API v2 `trigger` of `alert` (routing_key is the integration's; no other secret)."""
    body = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": alert.dedup,
            "payload": {"summary": alert.summary(), "source": f"ubertruck-ops/{alert.environment}",
                        "severity": _PAGERDUTY_SEVERITY.get(alert.severity, "error"),
                        "timestamp": alert.since.isoformat(), "component": alert.target,
                        "group": alert.environment, "class": alert.rule,
                        "custom_details": {**alert.facts(), "detail": alert.detail[:2000]}}}
    if alert.link:
        body["links"] = [{"href": alert.link, "text": "the run or the UI"}]
    return body


def pagerduty_resolve(dedup: str, routing_key: str) -> dict:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup}


def email_text(alert: Alert) -> tuple[str, str]:
    """Given an alert, return (subject, body) of its email."""
    facts = alert.facts()
    lines = [alert.summary(), ""] + [f"{name}: {value}" for name, value in facts.items()]
    if alert.detail:
        lines += ["", alert.detail[:4000]]
    lines += ["", "-- ubertruck-ops (severity routing: the README's alert table)"]
    return alert.summary()[:200], "\n".join(lines)


def resolved_email_text(alert: Alert, seconds: float) -> tuple[str, str]:
    subject = f"[{alert.environment}] RESOLVED: {alert.target} after {round(seconds)} s"
    return subject, "\n".join([subject, "", *(f"{k}: {v}" for k, v in alert.facts().items())])


@dataclass(frozen=True)
class DigestItem:
    """A low finding of the day, or one of the day's incidents."""

    what: str
    detail: str = ""


def digest_text(environment: str, day: str, low: list[DigestItem], incidents: list[str]) -> tuple[str, str]:
    """The daily digest: the day's low findings (disk > 70 %, certificates < 30 days, checks that are
    not configured) and a summary of the day's incidents. Return (subject, body)."""
    subject = f"[{environment}] daily digest {day}: {len(low)} low item(s), {len(incidents)} incident(s)"
    lines = [subject, "", "Low items:"]
    lines += [f"- {item.what}" + (f": {item.detail}" if item.detail else "") for item in low] or ["- none"]
    lines += ["", "Today's incidents:"]
    lines += [f"- {line}" for line in incidents] or ["- none"]
    return subject, "\n".join(lines)


# Silences --------------------------------------------------------------------------------------

MAX_SILENCE = timedelta(days=7)
_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """Given "2h", "30m", "1h30m", "90s" or "1d", return the duration. Raise ValueError for anything
    else, for zero, and for more than MAX_SILENCE (a silence always expires, and soon)."""
    found = _DURATION.match(text.strip().lower()) if text and text.strip() else None
    if found is None or not any(found.groupdict().values()):
        raise ValueError(f"duration {text!r} must look like 2h, 30m, 1h30m, 90s or 1d")
    parts = {k: int(v or 0) for k, v in found.groupdict().items()}
    duration = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if duration <= timedelta(0):
        raise ValueError("a silence must last more than zero seconds")
    if duration > MAX_SILENCE:
        raise ValueError(f"a silence lasts at most {MAX_SILENCE.days} days (asked: {text}); make a new one when it ends")
    return duration


@dataclass(frozen=True)
class Silence:
    id: str
    environment: str
    starts: datetime
    ends: datetime
    reason: str
    target: str | None = None      # None: everything of the environment
    created_by: str = ""
    announced_end: bool = field(default=False, compare=False)

    def covers(self, environment: str, target: str, now: datetime) -> bool:
        """Whether this silence quiets an alert about `target` of `environment` at `now`: the same
        environment, inside its time, and no target or the alert's target (or a word of it:
        "booking-service" covers "health booking-service")."""
        if environment != self.environment or not (self.starts <= now < self.ends):
            return False
        return self.target is None or self.target == target or self.target in target.split()

    def to_dict(self) -> dict:
        return {"id": self.id, "environment": self.environment, "starts": self.starts.isoformat(),
                "ends": self.ends.isoformat(), "reason": self.reason, "target": self.target,
                "created_by": self.created_by, "announced_end": self.announced_end}

    @classmethod
    def from_dict(cls, data: dict) -> Silence:
        """Read a stored silence (the CLI's, or one written by hand in the UI). Raise ValueError for
        a time without its UTC offset (it could not be compared with now). A silence written to last
        longer than MAX_SILENCE ends MAX_SILENCE after its start: every silence expires."""
        starts, ends = datetime.fromisoformat(data["starts"]), datetime.fromisoformat(data["ends"])
        if starts.tzinfo is None or ends.tzinfo is None:
            raise ValueError("a silence's starts and ends need their UTC offset (e.g. 2026-12-05T03:00:00+00:00)")
        return cls(id=str(data["id"]), environment=str(data["environment"]), starts=starts,
                   ends=min(ends, starts + MAX_SILENCE), reason=str(data.get("reason") or ""),
                   target=data.get("target") or None, created_by=str(data.get("created_by") or ""),
                   announced_end=bool(data.get("announced_end")))


def covering(silences: list[Silence], environment: str, target: str, now: datetime) -> Silence | None:
    """The first silence that covers `target` at `now`, or None."""
    return next((s for s in silences if s.covers(environment, target, now)), None)


def ended_unannounced(silences: list[Silence], now: datetime) -> list[Silence]:
    """Silences whose time is over and whose end nobody has announced yet."""
    return [s for s in silences if s.ends <= now and not s.announced_end]


def kept_silences(silences: list[Silence], now: datetime, keep_for: timedelta = timedelta(days=1)) -> list[Silence]:
    """What stays in the list: active ones, and ended ones for a day (the morning checklist reads them)."""
    return [s for s in silences if s.ends > now - keep_for]


# The morning checklist's "overnight alerts" -----------------------------------------------------

@dataclass(frozen=True)
class Happened:
    """One thing that went wrong overnight: a watch incident or a failed run of the environment."""

    what: str                   # "health booking-service down", "nightly-backup run failed"
    started: datetime
    seconds: float | None       # how long it lasted; None: still going
    paged: bool
    silenced: bool = False


def pair_watch_events(events: list[tuple[str, str, datetime, dict]]) -> list[Happened]:
    """Given watch events (kind down|recovered, target, when, payload), oldest first, return the
    incidents: each down with the recovery that followed it (or still going)."""
    open_: dict[str, tuple[datetime, dict]] = {}
    found: list[Happened] = []
    for kind, target, when, payload in sorted(events, key=lambda e: e[2]):
        if kind == "down":
            open_[target] = (when, payload)
        elif kind == "recovered" and target in open_:
            started, down = open_.pop(target)
            found.append(Happened(f"{target} down", started, (when - started).total_seconds(),
                                  bool(down.get("paged")), bool(down.get("silenced_by"))))
    found += [Happened(f"{target} down", started, None, bool(down.get("paged")), bool(down.get("silenced_by")))
              for target, (started, down) in open_.items()]
    return sorted(found, key=lambda h: h.started)


def overnight_lines(happened: list[Happened]) -> list[str]:
    """One line per overnight alert: what, when, for how long, and whether someone was paged."""
    from ubertruck_ops.core.text import human_seconds

    lines = []
    for h in happened:
        lasted = f"for {human_seconds(h.seconds)}" if h.seconds is not None else "STILL GOING"
        who = "paged" if h.paged else ("silenced" if h.silenced else "not paged")
        lines.append(f"{h.what} at {h.started:%H:%M} UTC {lasted} ({who})")
    return lines
