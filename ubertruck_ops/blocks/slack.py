"""Where notices go."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class SlackNotices(Block):
    """A Slack incoming webhook. Without one, notices go to the run's log."""

    _block_type_name = "Ubertruck Slack Notices"
    _block_type_slug = "ubertruck-slack-notices"
    _description = "Slack incoming webhook for operation notices; the URL is a secret."

    webhook_url: SecretStr | None = Field(default=None, title="Webhook URL",
                                          description="Slack incoming webhook URL; empty sends notices to the log only.")
    timeout_seconds: float = Field(default=10, title="Timeout (s)", description="Per-post HTTP timeout.")
