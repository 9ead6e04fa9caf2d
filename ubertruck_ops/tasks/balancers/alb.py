"""An AWS ALB target group as the load balancer, through boto3's `elbv2`: deregister a host's
targets and wait for the drain, register them and wait until healthy, read the group's state.
Verdicts on the health the ALB reports are core/load_balancer.py's.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.config import Config

from ubertruck_ops.blocks.load_balancer import LoadBalancer
from ubertruck_ops.core.load_balancer import (
    TargetHealth,
    deregistered_verdict,
    healthy_verdict,
    host_states,
    of_host,
    refuse_last_target,
)
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.balancers import LoadBalancerError

ELB_ATTEMPTS = 6


def elbv2_client(lb: LoadBalancer):
    """Return a boto3 ELBv2 client with the block's credentials and endpoint override, botocore
    standard retries (throttling, 5xx, dropped connections) and connect/read timeouts."""
    params = lb.aws.aws_client_parameters.get_params_override()
    params["config"] = Config(retries={"max_attempts": ELB_ATTEMPTS, "mode": "standard"}, connect_timeout=10,
                              read_timeout=30)
    params["region_name"] = lb.region
    return lb.aws.get_boto3_session().client("elbv2", **params)


def _health(client, lb: LoadBalancer, targets: list[dict] | None = None) -> list[TargetHealth]:
    kwargs: dict[str, Any] = {"TargetGroupArn": lb.target_group_arn}
    if targets:
        kwargs["Targets"] = targets
    answer = client.describe_target_health(**kwargs)
    return [TargetHealth(id=d["Target"]["Id"], port=d["Target"].get("Port"),
                         state=d.get("TargetHealth", {}).get("State", ""),
                         reason=d.get("TargetHealth", {}).get("Reason", ""))
            for d in answer.get("TargetHealthDescriptions", [])]


def _shown(health: list[TargetHealth]) -> list[dict]:
    return [{"id": h.id, "port": h.port, "state": h.state, "reason": h.reason} for h in health]


def _poll(what: str, read, verdict, timeout: float, poll: float) -> tuple[float, list[TargetHealth]]:
    """Read health every `poll` s until the verdict is done; return (seconds waited, last health).
    Raise LoadBalancerError on a failed verdict or at `timeout`."""
    started = time.monotonic()
    last_why = None
    while True:
        health = read()
        outcome, why = verdict(health)
        if why != last_why:
            logger().info("%s: %s", what, why)
            last_why = why
        waited = time.monotonic() - started
        if outcome == "done":
            return waited, health
        if outcome == "failed":
            raise LoadBalancerError(f"{what} failed: {why}")
        if waited >= timeout:
            raise LoadBalancerError(f"{what}: still {why} after {timeout:.0f} s; not waiting longer")
        time.sleep(min(poll, max(0.0, timeout - waited)))


def deregister(lb: LoadBalancer, host: str) -> dict:
    """Deregister `host`'s targets (refused when no other target is healthy) and wait until they drain."""
    client = elbv2_client(lb)
    targets = lb.targets_of(host)
    registered = _health(client, lb)
    refuse_last_target(registered, targets)
    mine = [t for t in targets if of_host(registered, [t])]
    if mine:
        client.deregister_targets(TargetGroupArn=lb.target_group_arn, Targets=mine)
        logger().info("deregistered %s's targets %s from %s", host, mine, lb.target_group_arn)
    waited, health = _poll(f"deregistering {host}", lambda: _health(client, lb, targets), deregistered_verdict,
                           lb.deregistration_timeout_seconds, lb.poll_seconds)
    return {"host": host, "kind": "alb", "targets": targets, "deregistered": mine, "seconds_waited": round(waited, 3),
            "health": _shown(health)}


def register(lb: LoadBalancer, host: str) -> dict:
    """Register `host`'s targets and wait until the ALB reports them healthy."""
    client = elbv2_client(lb)
    targets = lb.targets_of(host)
    # Registering a registered target is a no-op for the ALB: register is safe after any failure.
    client.register_targets(TargetGroupArn=lb.target_group_arn, Targets=targets)
    logger().info("registered %s's targets %s in %s", host, targets, lb.target_group_arn)
    waited, health = _poll(f"registering {host}", lambda: _health(client, lb, targets),
                           lambda h: healthy_verdict(h, len(targets)), lb.healthy_timeout_seconds, lb.poll_seconds)
    return {"host": host, "kind": "alb", "targets": targets, "seconds_waited": round(waited, 3),
            "health": _shown(health)}


def state(lb: LoadBalancer) -> dict:
    """Return each host's state in the target group, every target's health and targets of no host."""
    health = _health(elbv2_client(lb), lb)
    hosts = {host: lb.targets_of(host) for host in lb.host_names}
    known = [t for targets in hosts.values() for t in targets]
    return {"kind": "alb", "hosts": host_states(hosts, health), "health": _shown(health),
            "unknown_targets": _shown([h for h in health if not any(h.matches(t) for t in known)])}
