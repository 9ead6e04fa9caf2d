"""Where notices go: Slack, and the dead man's switch outside Prefect."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass


class SlackNotices(SchemaOncePerClass, Block):
    """A Slack incoming webhook. Without one, notices go to the run's log."""

    _block_type_name = "Ubertruck Slack Notices"
    _block_type_slug = "ubertruck-slack-notices"
    _description = "Slack incoming webhook for operation notices; the URL is a secret."

    webhook_url: SecretStr | None = Field(default=None, title="Webhook URL",
                                          description="Slack incoming webhook URL; empty sends notices to the log only.")
    timeout_seconds: float = Field(default=10, title="Timeout (s)", description="Per-post HTTP timeout.")
    ping_url: SecretStr | None = Field(default=None, title="Dead man's switch ping URL",
                                       description="Healthchecks.io-style check (HEALTHCHECK_PING_URL): backups, "
                                                   "drills and checklists request <url>/start, then <url> or "
                                                   "<url>/fail, so a dead Prefect server is noticed elsewhere.")
    wal_archive_ping_url: SecretStr | None = Field(
        default=None, title="wal-archive's dead man's switch",
        description="A check of its own for `ubertruck-ops wal-archive` (WAL_ARCHIVE_PING_URL): /start when it "
                    "starts, a success ping at most once a minute while WAL is archived, /fail while it fails.")
    watch_ping_url: SecretStr | None = Field(
        default=None, title="watch's dead man's switch",
        description="A check of its own for `ubertruck-ops watch` (WATCH_PING_URL): /start when it starts, a "
                    "success ping at most once a minute while rounds complete, /fail while they fail.")

    @field_validator("ping_url", "wal_archive_ping_url", "watch_ping_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("the ping URL must be an http:// or https:// URL")
        return value
