"""PagerDuty's Events API v2: send a trigger or a resolve built by core/alerts.py. A page that
cannot be sent is logged and never fails the job; two attempts, seconds apart at most.

urllib, not httpx: httpx logs every request at INFO, and the body holds the routing key."""

from __future__ import annotations

import json
import time
import urllib.request
from urllib.error import HTTPError

from ubertruck_ops.blocks.alerting import AlertChannels
from ubertruck_ops.log import logger

ATTEMPTS = 2
PAUSE_SECONDS = 0.5


def send_event(channels: AlertChannels, body: dict) -> bool:
    """POST `body` (a v2 event holding the routing key) to the block's events URL; return True when
    PagerDuty accepted it (202). Retry once on a refused connection, a timeout, 429 or 5xx; a 400 (an
    event PagerDuty refuses) is not retried. Never raises, never logs the body."""
    what = f"PagerDuty {body.get('event_action')} {body.get('dedup_key', '')}"
    data = json.dumps(body).encode()
    outcome = ""
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(channels.pagerduty_events_url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=channels.timeout_seconds) as answer:
                status = answer.status
        except HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:       # refused, reset, timed out
            outcome = f"{type(exc).__name__}"
            status = None
        if status == 202:
            logger().info("%s: sent", what)
            return True
        if status is not None:
            outcome = f"HTTP {status}"
            if status < 500 and status != 429:
                break
        if attempt < ATTEMPTS:
            time.sleep(PAUSE_SECONDS)
    logger().warning("%s not sent (%s); the job goes on and Slack still hears it", what, outcome)
    return False
