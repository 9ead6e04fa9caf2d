"""The two load balancers a rolling deploy can stand behind, one module each behind one small
interface: `alb` (an AWS ALB target group, through boto3's elbv2) and `nginx` (upstreams in an
include file on the load-balancer host). tasks/load_balancer.py picks one by the block's `kind`.
"""

from __future__ import annotations

from typing import Protocol

from ubertruck_ops.blocks.load_balancer import LoadBalancer


class LoadBalancerError(RuntimeError):
    """A host did not leave or rejoin the balancer in time, or nginx refused its new configuration."""


class Balancer(Protocol):
    """What each balancer module provides. Each returns what it measured (targets, states, seconds)."""

    def deregister(self, lb: LoadBalancer, host: str) -> dict:
        """Take `host` out: return once no new request reaches it and its connections have drained."""

    def register(self, lb: LoadBalancer, host: str) -> dict:
        """Bring `host` in (a no-op when it is in): return once it serves through the balancer."""

    def state(self, lb: LoadBalancer) -> dict:
        """Return which hosts are in and out (`hosts`: host -> in | out | what the balancer reports)."""
