"""The load balancer in front of the app hosts: an AWS ALB target group through boto3's `elbv2`, or
nginx upstreams on the load-balancer host (the include file, nginx's own test and reload commands,
and its worker processes). Each task returns what it measured: targets, states, seconds waited.
Which host goes when, and whether one may go at all, is decided in core/load_balancer.py.

Recovery is the caller's: `put_back` is idempotent, so a rolling deploy calls it in a `finally`
after `take_out` and a failure between them leaves no host out:

    take_out(lb, host)
    try:
        hand_over(host); check(host)
    finally:
        put_back(lb, host)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from botocore.config import Config
from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.load_balancer import LoadBalancer
from ubertruck_ops.core.load_balancer import (TargetHealth, deregistered_verdict, down_hosts, healthy_verdict,
                                              host_states, of_host, refuse_last_target, render_upstreams)
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import execute

ELB_ATTEMPTS = 6


class LoadBalancerError(RuntimeError):
    """A host did not leave or rejoin the balancer in time, or nginx refused its new configuration."""


# ---- ALB ---------------------------------------------------------------------------------------

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


def _alb_take_out(lb: LoadBalancer, host: str) -> dict:
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


def _alb_put_back(lb: LoadBalancer, host: str) -> dict:
    client = elbv2_client(lb)
    targets = lb.targets_of(host)
    # Registering a registered target is a no-op for the ALB: put_back is safe after any failure.
    client.register_targets(TargetGroupArn=lb.target_group_arn, Targets=targets)
    logger().info("registered %s's targets %s in %s", host, targets, lb.target_group_arn)
    waited, health = _poll(f"registering {host}", lambda: _health(client, lb, targets),
                           lambda h: healthy_verdict(h, len(targets)), lb.healthy_timeout_seconds, lb.poll_seconds)
    return {"host": host, "kind": "alb", "targets": targets, "seconds_waited": round(waited, 3),
            "health": _shown(health)}


def _alb_state(lb: LoadBalancer) -> dict:
    health = _health(elbv2_client(lb), lb)
    hosts = {host: lb.targets_of(host) for host in lb.host_names}
    known = [t for targets in hosts.values() for t in targets]
    return {"kind": "alb", "hosts": host_states(hosts, health), "health": _shown(health),
            "unknown_targets": _shown([h for h in health if not any(h.matches(t) for t in known)])}


# ---- nginx -------------------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, text: str | None) -> None:
    """Replace `path` with `text` (None: remove it) in one rename, keeping its mode and owner: nginx
    never reads half a file, and a crash leaves the old or the new one."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    try:
        old = path.stat()
        mode, owner = old.st_mode & 0o777, (old.st_uid, old.st_gid)
    except FileNotFoundError:
        mode, owner = 0o644, None     # nginx's master (often root) and its test run read it; it holds no secret
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        if owner and os.geteuid() == 0:
            os.chown(temp, *owner)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _master_pid(lb: LoadBalancer) -> int | None:
    if not lb.pid_file:
        return None
    try:
        pid = int(Path(lb.pid_file).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:       # alive, owned by another user: its /proc entries are still readable
        return pid
    except OSError:
        return None
    return pid


def _workers(master: int) -> set[int]:
    """Return the pids whose parent is `master` (nginx's workers, old and new), from /proc."""
    children = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master:
            children.add(int(entry.name))
    return children


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists()}


def _apply(lb: LoadBalancer, down: set[str], drain: bool) -> dict:
    """Render the upstreams with `down` out, and when the file changes: write it, test it, reload,
    and (when `drain`) wait for the workers from before the reload to exit. Return what was measured."""
    path = Path(lb.upstreams_file)
    before = _read(path)
    text = render_upstreams(lb.upstreams, down, lb.upstream_directives)
    if text == before:
        return {"changed": False, "seconds_waited": 0.0, "old_workers": None}
    _write_atomically(path, text)
    master = _master_pid(lb)
    old = _workers(master) if master else set()
    try:
        if lb.test_command:
            execute.run(lb.test_command, timeout=60)
        started = time.monotonic()
        execute.run(lb.reload_command, timeout=60)
    except BaseException:
        # What nginx runs and what the file says must agree: put the old file back.
        _write_atomically(path, before)
        raise
    logger().info("%s rewritten with %s down; nginx reloaded", path, sorted(down) or "no host")
    result: dict[str, Any] = {"changed": True, "old_workers": sorted(old) if master else None}
    if not drain:
        result["seconds_waited"] = 0.0
        return result
    workers_gone = None
    while True:
        waited = time.monotonic() - started
        remaining = _alive(old)
        if not remaining and workers_gone is None:
            workers_gone = waited
        if workers_gone is not None and waited >= lb.drain_seconds:
            break
        if waited >= lb.drain_timeout_seconds:
            raise LoadBalancerError(f"nginx's workers from before the reload (pids {sorted(remaining)}) still hold "
                                    f"connections after {lb.drain_timeout_seconds:.0f} s (or the reload did not take "
                                    "effect: see nginx's error log)")
        # /proc is cheap to read: watch the old workers closely, so the measured drain is close to the real one.
        time.sleep(0.2 if remaining else max(0.0, min(lb.poll_seconds, lb.drain_seconds - waited)))
    result.update(seconds_waited=round(time.monotonic() - started, 3),
                  old_workers_exited_after=round(workers_gone, 3) if master else None)
    return result


def _nginx_down(lb: LoadBalancer) -> set[str] | None:
    text = _read(Path(lb.upstreams_file))
    return None if text is None else down_hosts(text, lb.upstreams)


def _nginx_take_out(lb: LoadBalancer, host: str) -> dict:
    targets = lb.targets_of(host)
    down = (_nginx_down(lb) or set()) | {host}
    return {"host": host, "kind": "nginx", "targets": targets, "down": sorted(down), **_apply(lb, down, drain=True)}


def _nginx_put_back(lb: LoadBalancer, host: str) -> dict:
    targets = lb.targets_of(host)
    down = (_nginx_down(lb) or set()) - {host}
    return {"host": host, "kind": "nginx", "targets": targets, "down": sorted(down), **_apply(lb, down, drain=False)}


def _nginx_state(lb: LoadBalancer) -> dict:
    down = _nginx_down(lb)
    return {"kind": "nginx", "file": lb.upstreams_file, "file_present": down is not None,
            "hosts": {host: "out" if host in (down or set()) else "in" for host in lb.host_names},
            "master_pid": _master_pid(lb)}


# ---- tasks -------------------------------------------------------------------------------------

@task(name="lb-take-out", cache_policy=NO_CACHE)
def take_out(lb: LoadBalancer, host: str) -> dict:
    """Take `host` out of the balancer and return once no new request reaches it and its
    connections have drained. Raise LastServingHost (before changing anything) when it is the last
    host serving; LoadBalancerError when draining outlasts the block's timeout."""
    return _alb_take_out(lb, host) if lb.kind == "alb" else _nginx_take_out(lb, host)


@task(name="lb-put-back", cache_policy=NO_CACHE)
def put_back(lb: LoadBalancer, host: str) -> dict:
    """Put `host` back into the balancer (a no-op when it is in) and return once the ALB reports
    its targets healthy, or nginx has reloaded. Raise LoadBalancerError when they do not get there."""
    return _alb_put_back(lb, host) if lb.kind == "alb" else _nginx_put_back(lb, host)


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
    return _alb_state(lb) if lb.kind == "alb" else _nginx_state(lb)
