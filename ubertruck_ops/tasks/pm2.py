"""PM2: hand services over to a new release without dropping a request, list, save.

Why not `pm2 reload`: PM2 keeps an app's script path for its lifetime - measured on PM2 7,
`pm2 reload ecosystem.config.js --update-env` after the script path changed keeps running
the old file. So each release runs as its own PM2 app (`<service>@<tag>`, namespace
`<service>`) from its real folder. In cluster mode every app on a port shares the
listening socket held by the PM2 daemon, so the hand-over is: start the new app, wait
until it says ready, then stop the old one gracefully (SIGINT, it drains). The port
never stops accepting connections.

How we talk to the daemon: through `pm2_handover.js` beside this file, which loads the PM2
library of the same install as the pm2 command and does a whole operation (list; or start
every new app of a batch, wait for all, delete the old ones; or save) over one connection.
Measured on 2 cores with one client per service sending without pause: a `pm2` CLI call
(a fresh Node process that loads all of PM2) cost 0.5 s and more, and the old per-service
hand-over made five to eight of them per service; one helper call hands all six services
over in about 2.5 s.

The daemon runs with NODE_CLUSTER_SCHED_POLICY=none: with Node's default round-robin
the daemon hands connections to a worker that is shutting down (measured: lost requests).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.core import pm2 as verdicts
from ubertruck_ops.core.pm2 import Pm2App
from ubertruck_ops.core.releases import app_name
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.execute import CommandFailed, ToolMissing, run
from ubertruck_ops.tasks.npm import require_node

PM2_INSTALL = "npm install -g pm2@7   (or ./ops, which installs it into .tools/)"
HELPER = Path(__file__).with_name("pm2_handover.js")
# Options for every app we start, over the ecosystem file's. pmx false: PM2 otherwise loads its
# @pm2/io agent into every app (custom metrics for `pm2 monit`/Keymetrics, unused here); measured on
# 2 cores under one client per service, it made starting six apps take 1.8-2.5 s instead of 0.7-1.0 s.
START_OVERRIDES = {"pmx": False}


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


def pm2_library(app: AppHost) -> Path:
    """Return the folder of the PM2 package the pm2 command runs (its bin/pm2 resolves into it), so
    the helper speaks the daemon's own version. Raise ToolMissing when it is not a PM2 install."""
    command = Path(os.path.realpath(pm2_command(app)))
    for folder in (command.parent.parent, command.parent):
        try:
            if json.loads((folder / "package.json").read_text()).get("name") == "pm2":
                return folder
        except (OSError, ValueError):
            continue
    raise ToolMissing(f"pm2 ('{command}') is not inside a pm2 npm package; install it with: {PM2_INSTALL}")


def _env(app: AppHost) -> dict[str, str]:
    env = {"NODE_CLUSTER_SCHED_POLICY": "none", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if app.pm2_home:
        env["PM2_HOME"] = app.pm2_home
    return env


def _pm2(app: AppHost, *args: str, timeout: float = 120) -> str:
    """Run `pm2 ARGS` for this host; return its output."""
    return run([pm2_command(app), *args], env=_env(app), timeout=timeout).stdout.decode(errors="replace")


def _daemon(app: AppHost, request: dict, timeout: float = 120) -> dict:
    """Do one operation of pm2_handover.js against this host's daemon (started when absent); return
    its result. Raise CommandFailed when the helper fails or answers nothing."""
    node, _ = require_node()
    argv = [node, str(HELPER), str(pm2_library(app))]
    out = run(argv, env=_env(app), input=json.dumps(request).encode(), timeout=timeout).stdout.decode(errors="replace")
    answers = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if not answers:
        raise CommandFailed(" ".join(argv), 0, out[-2000:], reason="no result")
    return json.loads(answers[-1].removeprefix("RESULT "))


def list_apps(app: AppHost) -> list[Pm2App]:
    """Return every app PM2 runs for this host's services."""
    return verdicts.apps_of(_daemon(app, {"op": "list"})["apps"], list(app.services))


@task(name="hand-over-services", cache_policy=NO_CACHE)
def hand_over(app: AppHost, services: str | Sequence[str], tag: str, ecosystem: Path,
              ready_timeout: float = 30, config: int = 0) -> list[Pm2App]:
    """Make each of `services` (one name or several, handed over together) run release `tag` with
    configuration version `config` and nothing else, without a moment where its port refuses
    connections; return what PM2 runs after. Raise HandOverFailed (this batch's old apps left
    serving) when a new one does not come up."""
    names = [services] if isinstance(services, str) else list(services)
    wanted = {service: app_name(service, tag, config) for service in names}
    result = _daemon(app, {"op": "handover", "ecosystem": str(ecosystem), "wanted": wanted,
                           "ready_timeout_ms": int(ready_timeout * 1000), "overrides": START_OVERRIDES}, timeout=ready_timeout + 90)
    if not result["ok"]:
        failed = result["failed"]
        raise HandOverFailed("; ".join(
            f"{name} did not come up ({seen}); the previous release keeps serving {service}. "
            f"Last error lines: {_error_tail(app, service)}"
            for service, name in wanted.items() if (seen := failed.get(name)) is not None))
    log = logger()
    for service in names:
        log.info("%s: %s", service, result["actions"][service])
    log.info("hand-over of %d service(s) in ms since the helper started: %s", len(names),
             ", ".join(f"{k} {v}" for k, v in result.get("timings", {}).items()))
    return verdicts.apps_of(result["apps"], list(app.services))


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
        _daemon(app, {"op": "delete", "ids": list(ids)})


@task(name="pm2-save", cache_policy=NO_CACHE)
def save(app: AppHost) -> None:
    """`pm2 save`: what runs now is what `pm2 resurrect` brings back after a reboot. The dump holds
    every app's environment (the services' secrets) and PM2 writes it with the daemon's umask: it is
    made 0600, and PM2's home 0700, here."""
    _daemon(app, {"op": "save"})
    home = pm2_home(app)
    if home.is_dir():
        os.chmod(home, 0o700)
        for dump in (home / "dump.pm2", home / "dump.pm2.bak"):
            if dump.is_file() and not dump.is_symlink():
                os.chmod(dump, 0o600)


def pm2_home(app: AppHost) -> Path:
    """PM2's home on this host: the block's PM2_HOME, else ~/.pm2 as PM2 itself picks it."""
    return Path(app.pm2_home) if app.pm2_home else Path.home() / ".pm2"


def restart_counts(app: AppHost, apps: list[Pm2App] | None = None) -> dict[str, int]:
    """Return PM2's restart count of every app of this host's services, summed over its instances."""
    return verdicts.restart_counts(list_apps(app) if apps is None else apps)


def running_problems(app: AppHost, tag: str, baseline: dict[str, int] | None = None, config: int = 0) -> list[str]:
    """Read what PM2 runs now and return core.pm2.running_problems' verdict on it for release `tag`
    with configuration version `config`."""
    return verdicts.running_problems(list_apps(app), list(app.services), tag, baseline, config)


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
