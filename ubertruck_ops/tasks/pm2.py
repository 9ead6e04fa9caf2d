"""PM2: hand a service over to a new release without dropping a request, list, save.

Why not `pm2 reload`: PM2 keeps an app's script path for its lifetime - measured on PM2 7,
`pm2 reload ecosystem.config.js --update-env` after the script path changed keeps running
the old file. So each release runs as its own PM2 app (`<service>@<tag>`, namespace
`<service>`) from its real folder. In cluster mode every app on a port shares the
listening socket held by the PM2 daemon, so the hand-over is: start the new app, wait
until it says ready, then stop the old one gracefully (SIGINT, it drains). The port
never stops accepting connections.

The daemon runs with NODE_CLUSTER_SCHED_POLICY=none: with Node's default round-robin
the daemon hands connections to a worker that is shutting down (measured: lost requests).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.core import pm2 as verdicts
from ubertruck_ops.core.pm2 import Pm2App
from ubertruck_ops.core.releases import app_name, service_of
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.execute import CommandFailed, ToolMissing, run
from ubertruck_ops.tasks.npm import require_node

PM2_INSTALL = "npm install -g pm2@7   (or ./ops, which installs it into .tools/)"


class HandOverFailed(RuntimeError):
    """A service's new release did not come up; the old one still serves."""


def pm2_command(app: AppHost) -> str:
    """Return the pm2 executable. Raise ToolMissing with the install command when it is absent."""
    require_node()
    command = app.pm2_command
    found = command if os.sep in command and os.access(command, os.X_OK) else shutil.which(command)
    if not found:
        raise ToolMissing(f"pm2 ('{command}') is not installed; install it with: {PM2_INSTALL}")
    return found


def _env(app: AppHost) -> dict[str, str]:
    env = {"NODE_CLUSTER_SCHED_POLICY": "none", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if app.pm2_home:
        env["PM2_HOME"] = app.pm2_home
    return env


def _pm2(app: AppHost, *args: str, timeout: float = 120) -> str:
    """Run `pm2 ARGS` for this host; return its output."""
    return run([pm2_command(app), *args], env=_env(app), timeout=timeout).stdout.decode(errors="replace")


def list_apps(app: AppHost) -> list[Pm2App]:
    """Return every app PM2 runs for this host's services."""
    # When the call spawns the daemon, pm2 prints "[PM2] ..." lines before the JSON line.
    lines = [line for line in _pm2(app, "jlist").splitlines() if line.startswith("[") and not line.startswith("[PM2")]
    apps = []
    for item in json.loads(lines[-1] if lines else "[]"):
        env = item.get("pm2_env", {})
        # our apps carry the service as namespace; apps started by hand may be named after it
        service = env.get("namespace") if env.get("namespace") in app.services else service_of(item.get("name", ""))
        if service not in app.services:
            continue
        apps.append(Pm2App(name=item["name"], pm_id=item["pm_id"], service=service, status=env.get("status", "?"),
                           restarts=int(env.get("restart_time", 0)) + int(env.get("unstable_restarts", 0)),
                           script=env.get("pm_exec_path", ""), pid=item.get("pid") or None))
    return apps


@task(name="hand-over-service", cache_policy=NO_CACHE)
def hand_over(app: AppHost, service: str, tag: str, ecosystem: Path, ready_timeout: float = 30) -> str:
    """Make `service` run release `tag` and nothing else, without a moment where its port refuses
    connections; return what was done. Raise HandOverFailed (the old app left serving) when the
    new one does not come up."""
    log = logger()
    wanted = app_name(service, tag)
    running = [a for a in list_apps(app) if a.service == service]
    mine = [a for a in running if a.name == wanted]
    if mine and all(a.status == "online" for a in mine):
        # Left running by an earlier, interrupted run or still live: nothing to start.
        action = f"{service}: {wanted} already runs"
    elif mine:
        _pm2(app, "reload", wanted, "--update-env")
        _wait_online(app, service, wanted, ready_timeout, restarts_before=_restarts(app, wanted))
        action = f"{service}: restarted {wanted}"
    else:
        _pm2(app, "start", str(ecosystem), "--only", wanted)
        try:
            _wait_online(app, service, wanted, ready_timeout, restarts_before=0)
        except HandOverFailed:
            _delete(app, [a.pm_id for a in list_apps(app) if a.name == wanted])
            raise
        action = f"{service}: {wanted} took over" + (f" from {', '.join(a.name for a in running)}" if running else "")
    old = [a for a in running if a.name != wanted]
    _delete(app, [a.pm_id for a in old])
    log.info(action)
    return action


def _restarts(app: AppHost, name: str) -> int:
    return restart_counts(app).get(name, 0)


def _wait_online(app: AppHost, service: str, name: str, timeout: float, restarts_before: int) -> None:
    deadline = time.monotonic() + timeout
    seen = "not started"
    while time.monotonic() < deadline:
        mine = [a for a in list_apps(app) if a.name == name]
        if mine:
            restarts = sum(a.restarts for a in mine)
            seen = ", ".join(sorted({a.status for a in mine})) + f", {restarts} restart(s)"
            if restarts > restarts_before or any(a.status in ("errored", "stopped") for a in mine):
                break
            if all(a.status == "online" for a in mine):
                return
        time.sleep(0.2)
    raise HandOverFailed(f"{name} did not come up ({seen}); the previous release keeps serving {service}. "
                         f"Last error lines: {_error_tail(app, service)}")


def _error_tail(app: AppHost, service: str, lines: int = 5) -> str:
    path = Path(app.logs) / f"{service}-error.log"
    for _ in range(10):    # PM2 writes its log files asynchronously: give the crash a moment to land
        try:
            tail = [line.strip() for line in path.read_text(errors="replace").splitlines()[-lines:] if line.strip()]
        except OSError:
            tail = []
        if tail:
            return " | ".join(tail)
        time.sleep(0.2)
    return f"(nothing in {path})"


def _delete(app: AppHost, ids: list[int]) -> None:
    if ids:
        # `delete` sends SIGINT and waits kill_timeout: in-flight requests finish first.
        _pm2(app, "delete", *map(str, ids))


@task(name="pm2-save", cache_policy=NO_CACHE)
def save(app: AppHost) -> None:
    """`pm2 save`: what runs now is what `pm2 resurrect` brings back after a reboot."""
    _pm2(app, "save", "--force")


def restart_counts(app: AppHost, apps: list[Pm2App] | None = None) -> dict[str, int]:
    """Return PM2's restart count of every app of this host's services, summed over its instances."""
    return verdicts.restart_counts(list_apps(app) if apps is None else apps)


def running_problems(app: AppHost, tag: str, baseline: dict[str, int] | None = None) -> list[str]:
    """Read what PM2 runs now and return core.pm2.running_problems' verdict on it for release `tag`."""
    return verdicts.running_problems(list_apps(app), list(app.services), tag, baseline)


def delete_apps(app: AppHost, ids: list[int]) -> None:
    """Stop and remove PM2 apps by id (gracefully: SIGINT, then kill_timeout)."""
    _delete(app, ids)


def restart_app(app: AppHost, pm_id: int) -> None:
    """`pm2 restart ID`: the guide's restart with downtime (benchmarks compare against it)."""
    _pm2(app, "restart", str(pm_id))


def kill_daemon(app: AppHost) -> None:
    """Stop this host's PM2 daemon and every app it runs (the sandbox and tests use this)."""
    try:
        _pm2(app, "kill", timeout=60)
    except (CommandFailed, ToolMissing):
        pass
