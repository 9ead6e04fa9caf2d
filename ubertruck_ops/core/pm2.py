"""What PM2 runs, as data, and the verdict on it against a release. Pure functions: tasks/pm2.py
measures (asks the daemon through tasks/pm2_handover.js), this module judges."""

from __future__ import annotations

from dataclasses import dataclass

from ubertruck_ops.core.releases import app_name, service_of


@dataclass
class Pm2App:
    """One app (one instance) PM2 runs for a service."""

    name: str
    pm_id: int
    service: str
    status: str
    restarts: int
    script: str
    pid: int | None


def apps_of(items: list[dict], services: list[str]) -> list[Pm2App]:
    """Given the daemon's list (dicts with name, pm_id, namespace, status, restarts, script, pid), return
    the apps of these services. Our apps carry the service as namespace; apps started by hand may
    only be named after it."""
    apps = []
    for item in items:
        namespace = item.get("namespace")
        service = namespace if namespace in services else service_of(str(item.get("name", "")))
        if service in services:
            apps.append(Pm2App(name=item["name"], pm_id=int(item["pm_id"]), service=service,
                               status=item.get("status") or "?", restarts=int(item.get("restarts") or 0),
                               script=item.get("script") or "", pid=item.get("pid") or None))
    return apps


def batches(services: list[str], size: int | None) -> list[list[str]]:
    """Given the services in order and a batch size (None: all at once), return the groups handed
    over together, in order. Raise ValueError on a size below 1."""
    if size is None:
        return [list(services)] if services else []
    if size < 1:
        raise ValueError(f"a hand-over batch holds at least one service, not {size}")
    return [list(services[start:start + size]) for start in range(0, len(services), size)]


def restart_counts(apps: list[Pm2App]) -> dict[str, int]:
    """Given PM2's apps, return each app name's restart count summed over its instances."""
    counts: dict[str, int] = {}
    for item in apps:
        counts[item.name] = counts.get(item.name, 0) + item.restarts
    return counts


def running_problems(apps: list[Pm2App], services: list[str], tag: str,
                     baseline: dict[str, int] | None = None, config: int = 0) -> list[str]:
    """Given PM2's apps and the host's services, return what is wrong for release `tag` with
    configuration version `config`: a service
    not online, restarted since `baseline` (restart counts taken after the hand-over), or still
    sharing its port with another release. Empty: every service runs `tag` and nothing else."""
    baseline, now = baseline or {}, restart_counts(apps)
    problems = []
    for service in services:
        wanted = app_name(service, tag, config)
        mine = [a for a in apps if a.service == service]
        if not any(a.name == wanted for a in mine):
            problems.append(f"{service}: PM2 runs no {wanted}")
        for item in mine:
            if item.name != wanted:
                problems.append(f"{service}: {item.name} still runs beside {wanted}")
            elif item.status != "online" or now[wanted] > baseline.get(wanted, now[wanted]):
                problems.append(f"{service}: {wanted} is {item.status}, restarted "
                                f"{now[wanted] - baseline.get(wanted, 0)} time(s) since it took over")
    return problems
