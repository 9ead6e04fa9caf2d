"""Checks on Redis: reachable, cache hit rate, queue backlog; and the weekly clean-up."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis

from ubertruck_ops.blocks.monitoring import CheckThresholds, RedisCache
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.text import one_line


def _client(block: RedisCache) -> redis.Redis:
    return redis.Redis.from_url(block.url, password=block.password.get_secret_value() if block.password else None,
                                socket_timeout=block.timeout_seconds, socket_connect_timeout=block.timeout_seconds)


def _where(block: RedisCache) -> str:
    """host:port only: a URL may carry a password (redis://:pw@host), and this text goes to Slack."""
    parts = urlsplit(block.url)
    return f"{parts.hostname}:{parts.port or 6379}"


def reachable(block: RedisCache) -> CheckResult:
    """Redis answers PING: critical otherwise (the services' cache and job queue live there),
    naming host and port only."""
    try:
        _client(block).ping()
    except redis.RedisError as exc:
        return checks.critical("redis reachable", "unreachable", "answers", f"Redis at {_where(block)}: "
                                                                           f"{one_line(exc)}"[:300])
    return checks.ok("redis reachable", "answers", "answers", f"Redis at {_where(block)} answered PING")


def cache_hit_rate(block: RedisCache, limits: CheckThresholds) -> CheckResult:
    """Redis keyspace hit rate (medium when low); critical when Redis does not answer."""
    try:
        stats = _client(block).info("stats")
    except redis.RedisError as exc:
        return checks.critical("redis cache hit rate", "unreachable", "answers",
                               f"Redis at {_where(block)}: {one_line(exc)}"[:300])
    hits, misses = stats.get("keyspace_hits", 0), stats.get("keyspace_misses", 0)
    if hits + misses == 0:
        return checks.ok("redis cache hit rate", None, None, "no lookups yet")
    rate = 100.0 * hits / (hits + misses)
    return checks.below("redis cache hit rate", rate, [(limits.cache_hit_medium_pct, checks.WARN, "medium")], "%",
                        f"{rate:.1f}% ({hits} hits, {misses} misses)")


def queue_backlog(block: RedisCache, limits: CheckThresholds) -> CheckResult:
    """Total length of the configured queue lists (high above the guide's 1000)."""
    client = _client(block)
    lengths = {key: client.llen(key) for key in limits.queue_keys}
    total = sum(lengths.values())
    detail = ", ".join(f"{k} {v}" for k, v in lengths.items()) or "no queue keys configured"
    return checks.above("queue backlog", total, [(limits.queue_backlog_high, checks.WARN, "high")], "", detail)


def clean_up(block: RedisCache, patterns: list[str]) -> dict[str, int]:
    """Delete keys matching each pattern (SCAN + UNLINK, never KEYS); return how many per pattern."""
    client = _client(block)
    removed = {}
    for pattern in patterns:
        count, batch = 0, []
        for key in client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                count += client.unlink(*batch)
                batch = []
        if batch:
            count += client.unlink(*batch)
        removed[pattern] = count
    return removed
