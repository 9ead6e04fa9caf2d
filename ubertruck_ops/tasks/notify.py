"""Slack: post a notice built by core/notices.py. A failed post is a warning, never a failure."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from slack_sdk.webhook import WebhookClient

from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.log import logger


@task(name="notify-slack", cache_policy=NO_CACHE, log_prints=False)
def notify(block: SlackNotices, payload: dict) -> bool:
    """Post `payload`; return True when Slack accepted it. Log, never raise, on failure."""
    log = logger()
    if block.webhook_url is None:
        log.info("notice (no Slack webhook configured): %s", payload.get("text"))
        return False
    try:
        response = WebhookClient(block.webhook_url.get_secret_value(), timeout=block.timeout_seconds).send_dict(payload)
    except Exception as exc:  # noqa: BLE001 - a notice must never fail the job it reports on
        log.warning("Slack notice not sent (%s: %s); the job's result stands", type(exc).__name__,
                    str(exc).replace(block.webhook_url.get_secret_value(), "<webhook>"))
        return False
    if response.status_code != 200:
        log.warning("Slack answered %s to a notice (%s); the job's result stands", response.status_code,
                    (response.body or "")[:200])
        return False
    return True
