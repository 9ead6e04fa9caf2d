"""Sending one alert to the people the routing table (core/alerts.py) names: Slack, PagerDuty,
email, or nobody while a silence covers it. Every source goes through here: `watch`, the flows'
failure notices, the checklists. Every channel is optional and fails soft (each task logs and
returns False); what was sent is returned, so the caller can record it (an event, the run log)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ubertruck_ops.blocks.alerting import AlertChannels
from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.core import alerts, notices
from ubertruck_ops.core.alerts import Alert, Silence
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import pagerduty
from ubertruck_ops.tasks.automation_pause import set_paused
from ubertruck_ops.tasks.email import send_email
from ubertruck_ops.tasks.notify import notify
from ubertruck_ops.tasks.silences import read_silences, write_silences


@dataclass
class Delivery:
    """What one alert reached: the channels that took it, and the silence that quieted it."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    silenced_by: str | None = None

    @property
    def paged(self) -> bool:
        return alerts.PAGE in self.sent


class Alerter:
    """The alert channels of one environment."""

    def __init__(self, environment: str, slack: SlackNotices, channels: AlertChannels | None = None):
        self.environment, self.slack = environment, slack
        self.channels = channels or AlertChannels()

    @property
    def configured(self) -> frozenset[str]:
        # Slack always: without a webhook, tasks/notify.py writes the notice to the run's log instead.
        return self.channels.configured() | {alerts.SLACK}

    def _silence(self, target: str, now: datetime) -> Silence | None:
        return alerts.covering(read_silences(self.environment), self.environment, target, now)

    def send(self, alert: Alert, slack_payload: dict, now: datetime | None = None,
             post: Callable[[dict], bool | None] | None = None) -> Delivery:
        """Send `alert` where its severity goes (slack_payload: its Slack notice, posted by `post` when
        given, e.g. an operation's own notify); nowhere while a silence covers its target (then said
        in the log)."""
        now = now or datetime.now(UTC)
        self.announce_ended_silences(now)
        delivery = Delivery()
        silence = self._silence(alert.target, now)
        if silence is not None:
            delivery.silenced_by = silence.id
            logger().info("alert %s (%s) silenced by %s until %s: recorded, nobody notified", alert.target,
                          alert.severity, silence.id, f"{silence.ends:%H:%M %Z}")
        for channel in alerts.channels(alert.severity, self.configured, silenced=silence is not None):
            if channel == alerts.DIGEST:
                continue                  # the evening checklist gathers the day's low items itself
            if channel == alerts.SLACK and post is not None:
                ok = post(slack_payload) is not False
            else:
                ok = self._send_one(channel, alert, slack_payload)
            if channel == alerts.SLACK and self.slack.webhook_url is None:
                continue                  # written to the log: neither sent nor failed
            (delivery.sent if ok else delivery.failed).append(channel)
        return delivery

    def _send_one(self, channel: str, alert: Alert, slack_payload: dict) -> bool:
        if channel == alerts.SLACK:
            return notify.fn(self.slack, slack_payload)
        if channel == alerts.PAGE:
            return pagerduty.send_event(self.channels, alerts.pagerduty_trigger(
                alert, self.channels.pagerduty_routing_key.get_secret_value()))
        subject, body = alerts.email_text(alert)
        return send_email(self.channels, subject, body)

    def resolve(self, alert: Alert, slack_payload: dict, seconds: float, paged: bool,
                now: datetime | None = None) -> Delivery:
        """`alert` is over: resolve its page (when one was sent, whatever silence began since: a page
        must never stay open), then tell Slack and email as its severity says, unless silenced."""
        now = now or datetime.now(UTC)
        delivery = Delivery()
        if paged and alerts.PAGE in self.configured:
            ok = pagerduty.send_event(self.channels, alerts.pagerduty_resolve(
                alert.dedup, self.channels.pagerduty_routing_key.get_secret_value()))
            (delivery.sent if ok else delivery.failed).append(alerts.PAGE)
        silence = self._silence(alert.target, now)
        if silence is not None:
            delivery.silenced_by = silence.id
            return delivery
        for channel in alerts.channels(alert.severity, self.configured):
            if channel == alerts.SLACK:
                ok = notify.fn(self.slack, slack_payload)
                if self.slack.webhook_url is None:
                    continue
            elif channel == alerts.EMAIL:
                ok = send_email(self.channels, *alerts.resolved_email_text(alert, seconds))
            else:
                continue
            (delivery.sent if ok else delivery.failed).append(channel)
        return delivery

    def resolve_flow(self, flow: str) -> bool:
        """A run of `flow` completed: resolve the page its failures may have opened (PagerDuty ignores
        a resolve of a key with no open incident). False without a routing key."""
        if alerts.PAGE not in self.configured or alerts.flow_failure_severity(flow) != alerts.CRITICAL:
            return False
        return pagerduty.send_event(self.channels, alerts.pagerduty_resolve(
            alerts.flow_dedup_key(self.environment, flow), self.channels.pagerduty_routing_key.get_secret_value()))

    def send_digest(self, subject: str, body: str) -> bool:
        """The daily digest by email; without email it stays in the caller's report and the log."""
        if alerts.EMAIL not in self.configured:
            logger().info("daily digest (no email configured: SMTP_URL, ALERT_EMAIL_FROM, ALERT_EMAIL_TO):\n%s", body)
            return False
        return send_email(self.channels, subject, body)

    def announce_ended_silences(self, now: datetime | None = None) -> list[str]:
        """Post "silence ended" once for every silence whose time is over, and drop silences that
        ended more than a day ago. Return the ids announced. Never raises."""
        now = now or datetime.now(UTC)
        try:
            silences = read_silences(self.environment)
            ended = alerts.ended_unannounced(silences, now)
            if not ended and alerts.kept_silences(silences, now) == silences:
                return []
            active = [s for s in silences if s.ends > now]
            for silence in ended:
                set_paused(self.environment, silence, False, active)
                notify.fn(self.slack, notices.silence_ended(silence))
            done = {s.id for s in ended}
            write_silences(self.environment, alerts.kept_silences(
                [replace(s, announced_end=True) if s.id in done else s for s in silences], now))
            return sorted(done)
        except Exception as exc:  # noqa: BLE001 - an announcement must never stop an alert
            logger().warning("could not announce the end of silences of %s: %s", self.environment, type(exc).__name__)
            return []
