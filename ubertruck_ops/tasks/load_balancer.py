"""The load balancer in front of the app hosts, as Prefect tasks: deregister a host, register it,
check through the balancer, read its state. The balancer itself is tasks/balancers/alb.py (an AWS
ALB target group) or tasks/balancers/nginx.py (nginx upstreams), picked by the block's `kind`. Each
task returns what it measured: targets, states, seconds waited. Which host goes when, and whether
one may go at all, is decided in core/load_balancer.py.

Recovery is the caller's: `register` is idempotent, so a rolling deploy calls it in a `finally`
after `deregister` and a failure between them leaves no host out:

    deregister(lb, host)
    try:
        hand_over(host); check(host)
    finally:
        register(lb, host)
"""

from __future__ import annotations

import time

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.load_balancer import LoadBalancer
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.balancers import Balancer, LoadBalancerError, alb, nginx

__all__ = ["LoadBalancerError", "check_through", "deregister", "register", "state"]


def _balancer(lb: LoadBalancer) -> Balancer:
    return alb if lb.kind == "alb" else nginx


@task(name="lb-deregister", cache_policy=NO_CACHE)
def deregister(lb: LoadBalancer, host: str) -> dict:
    """Take `host` out of the balancer and return once no new request reaches it and its
    connections have drained. Raise LastServingHost (before changing anything) when it is the last
    host serving; LoadBalancerError when draining outlasts the block's timeout."""
    return _balancer(lb).deregister(lb, host)


@task(name="lb-register", cache_policy=NO_CACHE)
def register(lb: LoadBalancer, host: str) -> dict:
    """Bring `host` back into the balancer (a no-op when it is in) and return once the ALB reports
    its targets healthy, or nginx has reloaded. Raise LoadBalancerError when they do not get there."""
    return _balancer(lb).register(lb, host)


@task(name="lb-check-through", cache_policy=NO_CACHE)
def check_through(lb: LoadBalancer) -> dict[str, float]:
    """GET each of the block's check URLs through the balancer until it answers 2xx; return URL ->
    seconds it took. Raise LoadBalancerError naming a URL that did not within check_timeout_seconds."""
    took: dict[str, float] = {}
    with httpx.Client(timeout=5, verify=True, follow_redirects=False) as client:
        for url in lb.check_urls:
            started, last = time.monotonic(), "no answer"
            while True:
                try:
                    answer = client.get(url)
                    if 200 <= answer.status_code < 300:
                        break
                    last = f"HTTP {answer.status_code}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - started > lb.check_timeout_seconds:
                    raise LoadBalancerError(f"{url} did not answer 2xx through the load balancer within "
                                            f"{lb.check_timeout_seconds:g} s (last: {last})")
                time.sleep(lb.poll_seconds)
            took[url] = round(time.monotonic() - started, 3)
    logger().info("through the load balancer: %s", ", ".join(f"{u} {s:.2f} s" for u, s in took.items()))
    return took


@task(name="lb-state", cache_policy=NO_CACHE)
def state(lb: LoadBalancer) -> dict:
    """Return which hosts are in and out of the balancer (`hosts`: host -> in | out | ALB states)."""
    return _balancer(lb).state(lb)
