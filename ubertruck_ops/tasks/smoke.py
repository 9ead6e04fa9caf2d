"""Smoke tests after go-live: every SMOKE_URLS URL must answer 2xx, through the balancer or the public URL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.log import logger

POLL_SECONDS = 0.5


def shown(url: str) -> str:
    """A smoke URL as logs and notices show it: without a user, password or query (a token may ride there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class SmokeTestFailed(RuntimeError):
    """A smoke URL did not answer 2xx in time: the release is put back."""


def _until_2xx(client: httpx.Client, url: str, deadline: float) -> tuple[str, float, str | None]:
    """GET `url` until it answers 2xx or `deadline` (monotonic) passes; return (url, seconds, problem)."""
    started, last = time.monotonic(), "no answer"
    while True:
        try:
            answer = client.get(url)
            if 200 <= answer.status_code < 300:
                return url, time.monotonic() - started, None
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            return url, time.monotonic() - started, last
        time.sleep(POLL_SECONDS)


@task(name="smoke-test", cache_policy=NO_CACHE)
def smoke_test(urls: list[str], timeout_seconds: float) -> dict[str, float]:
    """GET every URL at once until each answers 2xx; return URL -> seconds it took. Raise SmokeTestFailed
    naming every URL that did not within `timeout_seconds`, with what it answered last."""
    deadline = time.monotonic() + timeout_seconds
    with httpx.Client(timeout=min(10.0, max(timeout_seconds, 1.0)), follow_redirects=False) as client, \
            ThreadPoolExecutor(max_workers=min(8, max(1, len(urls)))) as pool:
        answers = list(pool.map(lambda url: _until_2xx(client, url, deadline), urls))
    failed = [f"{shown(url)} ({problem})" for url, _, problem in answers if problem is not None]
    if failed:
        raise SmokeTestFailed(f"smoke test failed: {', '.join(failed)} did not answer 2xx within "
                              f"{timeout_seconds:g} s")
    took = {shown(url): round(seconds, 3) for url, seconds, _ in answers}
    logger().info("smoke test passed: %s", ", ".join(f"{u} {s:.2f} s" for u, s in took.items()))
    return took
