"""Rolling over several app hosts: which hosts are down before a deploy, in what batches the rest
roll, and what a failure puts back. Pure functions, unit-tested."""

from __future__ import annotations

from datetime import datetime, timedelta

WORK_POOL = "ubertruck-ops"     # the process work pool of every deployment and every app host's queue


def hosts_down(last_polled: dict[str, datetime | None], now: datetime, seen_within: timedelta) -> dict[str, str]:
    """Given each host's worker's last poll of its queue (None: never), return the hosts counted as
    down, each with why."""
    down = {}
    for host, polled in last_polled.items():
        if polled is None:
            down[host] = "never polled: no worker has started on its queue"
        elif now - polled > seen_within:
            down[host] = f"its worker last polled {int((now - polled).total_seconds())} s ago"
    return down


def rolling_hosts(hosts: list[str], down: dict[str, str], skip: list[str]) -> list[str]:
    """Given the fleet's hosts in order, those down and those the operator skips, return the hosts to
    roll. Raise ValueError naming a down host that is not skipped (nothing changes then), or a
    skipped host that is not in the fleet."""
    unknown = sorted(set(skip) - set(hosts))
    if unknown:
        raise ValueError(f"skip_hosts names {', '.join(unknown)}, not an app host of this environment "
                         f"({', '.join(hosts)})")
    refused = {h: why for h, why in down.items() if h not in skip}
    if refused:
        detail = "; ".join(f"{h}: {why} (queue app-host-{h})" for h, why in refused.items())
        raise ValueError(f"app host(s) down before the deploy, nothing was changed: {detail}; start the host's worker "
                         f"(prefect worker start --pool {WORK_POOL} --work-queue app-host-<host>) or pass "
                         f"skip_hosts={sorted(refused)}")
    rolling = [h for h in hosts if h not in skip]
    if not rolling:
        raise ValueError("every app host is skipped: nothing to deploy to")
    return rolling


def batches(hosts: list[str], at_once: int) -> list[list[str]]:
    """Given the hosts in rolling order, return them in batches of `at_once`, never all hosts in one
    batch when there are several (the balancer must keep one serving)."""
    size = max(1, min(at_once, len(hosts) - 1)) if len(hosts) > 1 else 1
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]
