"""Slack: post a notice built by core/notices.py. A failed post is a warning, never a failure.

slack_sdk's own retry handlers retry what passes - a 429 (after its Retry-After), a 500/503, a
refused or reset connection - within a budget: a notice never holds up the job it reports on by
more than a few seconds. A 429 asking for a longer wait drops the notice (logged), as does a
timeout (the post's own timeout already spent the budget). Not a Prefect task retry: the task
never fails, so there is nothing for Prefect to retry; the attempts are logged instead.
"""

from __future__ import annotations

import logging
import socket
from urllib.error import URLError

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.webhook import WebhookClient

from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.core.retries import slack_retry_wait
from ubertruck_ops.log import logger

# The longest Retry-After a notice waits for, and the backoff of the other retries (0.25 s, 0.5 s).
MAX_RETRY_AFTER_SECONDS = 2.0
_BACKOFF = BackoffRetryIntervalCalculator(backoff_factor=0.25)

# slack_sdk logs the webhook URL (a secret) when it retries: its messages go nowhere; we log our own.
_QUIET = logging.getLogger("ubertruck_ops.slack_sdk")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class _BoundedRateLimit(RateLimitErrorRetryHandler):
    """Slack's 429: wait as its Retry-After says, but only when that is short."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if response is None:
            return False
        header = next((values[0] for name, values in response.headers.items() if name.lower() == "retry-after"), None)
        return slack_retry_wait(response.status_code, header, MAX_RETRY_AFTER_SECONDS) is not None

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        logger().info("Slack answered 429; sending the notice again after its Retry-After")
        super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)


class _RefusedOrReset(ConnectionErrorRetryHandler):
    """A refused or reset connection, once; never a timeout (it already took the post's timeout)."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        reason = error.reason if isinstance(error, URLError) else error
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return False
        return super()._can_retry(state=state, request=request, response=response, error=error)


def retry_handlers() -> list[RetryHandler]:
    """The retry handlers of every Slack post: bounded to a few seconds in all."""
    return [_BoundedRateLimit(max_retry_count=1),
            ServerErrorRetryHandler(max_retry_count=2, interval_calculator=_BACKOFF),
            _RefusedOrReset(max_retry_count=1, interval_calculator=_BACKOFF)]


@task(name="notify-slack", cache_policy=NO_CACHE, log_prints=False)
def notify(block: SlackNotices, payload: dict) -> bool:
    """Post `payload`; return True when Slack accepted it. Log, never raise, on failure."""
    log = logger()
    if block.webhook_url is None:
        log.info("notice (no Slack webhook configured): %s", payload.get("text"))
        return False
    try:
        client = WebhookClient(block.webhook_url.get_secret_value(), timeout=block.timeout_seconds,
                               retry_handlers=retry_handlers(), logger=_QUIET)
        response = client.send_dict(payload)
    except Exception as exc:  # noqa: BLE001 - a notice must never fail the job it reports on
        log.warning("Slack notice not sent (%s: %s); the job's result stands", type(exc).__name__,
                    str(exc).replace(block.webhook_url.get_secret_value(), "<webhook>"))
        return False
    if response.status_code != 200:
        log.warning("Slack answered %s to a notice (%s); the job's result stands", response.status_code,
                    (response.body or "")[:200])
        return False
    return True


PING_KINDS = {"start": "/start", "success": "", "fail": "/fail"}


def ping_address(url: str, kind: str) -> str:
    """Given a check's ping URL and a kind (start, success, fail), return the URL to request: the
    suffix goes at the end of the path, before any query (`.../uuid?create=1` + fail ->
    `.../uuid/fail?create=1`; appended after the query it would read as a success ping)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + PING_KINDS[kind]))


def ping(slack: SlackNotices, kind: str, message: str = "") -> str | None:
    """Tell the environment's dead man's switch (the block's ping_url) that a job started, succeeded
    or failed (ping_check). Return what happened, or None without a ping URL."""
    return ping_check(slack.ping_url, kind, message)


def ping_check(url: SecretStr | None, kind: str, message: str = "") -> str | None:
    """POST `message` to `<url>/start`, `<url>` or `<url>/fail` (ping_address). Return what
    happened, or None when `url` is None. Never raises: a switch that does not answer is a warning,
    and the job it reports on goes on.

    urllib, not httpx: httpx logs every request's URL at INFO, and this URL holds the check's key."""
    import urllib.request
    from urllib.error import HTTPError

    if url is None:
        return None
    address = ping_address(url.get_secret_value(), kind)
    for _attempt in (1, 2):
        try:
            request = urllib.request.Request(address, data=message[:10000].encode(), method="POST",
                                             headers={"Content-Type": "text/plain; charset=utf-8"})
            with urllib.request.urlopen(request, timeout=5) as answer:
                status = answer.status
        except HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:       # refused, reset, timed out (URLError is an OSError)
            outcome = f"ping {kind} failed: {type(exc).__name__}"     # never the URL: it holds the check's key
            continue
        outcome = f"ping {kind}: HTTP {status}"
        if status < 500:
            (logger().info if 200 <= status < 300 else logger().warning)(outcome)
            return outcome
    logger().warning("%s (after 2 attempts); the job goes on", outcome)
    return outcome
