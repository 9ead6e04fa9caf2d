"""Where alerts go besides Slack: PagerDuty (critical: phone and SMS are its escalation policy) and
email (high alerts, and the daily digest of low ones). Every channel is optional."""

from __future__ import annotations

from urllib.parse import urlsplit

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class AlertChannels(SchemaOncePerClass, Block):
    """PagerDuty and email for the environment's alerts, routed by severity (the README's alert table)."""

    _block_type_name = "Ubertruck Alert Channels"
    _block_type_slug = "ubertruck-alert-channels"
    _description = ("PagerDuty Events API v2 for critical alerts, SMTP email for high alerts and the daily digest; "
                    "the routing key and the SMTP URL (it holds the password) are secrets.")

    pagerduty_routing_key: SecretStr | None = Field(
        default=None, title="PagerDuty routing key",
        description="PAGERDUTY_ROUTING_KEY: the integration key of a PagerDuty service (Events API v2); empty: "
                    "nobody is paged, critical alerts go to Slack only.")
    pagerduty_events_url: str = Field(
        default=PAGERDUTY_EVENTS_URL, title="PagerDuty events URL",
        description="PAGERDUTY_EVENTS_URL: PagerDuty's enqueue URL (https://events.eu.pagerduty.com/v2/enqueue for "
                    "the EU service region).")
    smtp_url: SecretStr | None = Field(
        default=None, title="SMTP URL",
        description="SMTP_URL: smtp://user:password@host:587 (STARTTLS when the server offers it) or "
                    "smtps://user:password@host:465; empty: no email.")
    smtp_ca_file: str | None = Field(
        default=None, title="SMTP CA file",
        description="SMTP_CA_FILE: a PEM file of the CA that signed the SMTP server's certificate (a company relay "
                    "with its own CA); empty: the system's CAs. The certificate is always verified.")
    email_from: str | None = Field(default=None, title="Alert email sender",
                                   description="ALERT_EMAIL_FROM: the From address of alert emails.")
    email_to: list[str] = Field(default_factory=list, title="Alert email recipients",
                                description="ALERT_EMAIL_TO: comma-separated addresses of high alerts and the digest.")
    timeout_seconds: float = Field(default=5, title="Timeout (s)",
                                   description="Per-attempt timeout of a page or an email (two attempts at most).")

    @field_validator("pagerduty_events_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("the PagerDuty events URL must be an http:// or https:// URL")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("the SMTP URL must be smtp://[user:password@]host[:port] or smtps://...")
        return value

    def configured(self) -> frozenset[str]:
        """The channels this block makes reachable: page (a routing key), email (an SMTP URL, a sender
        and at least one recipient)."""
        found = set()
        if self.pagerduty_routing_key is not None:
            found.add("page")
        if self.smtp_url is not None and self.email_from and self.email_to:
            found.add("email")
        return frozenset(found)
