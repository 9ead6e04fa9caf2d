"""The part deploy, its automatic rollback and rollback share: put a built release live.

Switch `current`, hand the services over to the release together (or in batches of the
block's `handover_batch_size`), pass the health gate (every service probed at once), check
what PM2 runs, publish the frontend. Called from a flow; raises on the first failure and leaves
undoing it to the caller, which knows what was live before.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.core.pm2 import batches, running_problems
from ubertruck_ops.core.steps import Steps
from ubertruck_ops.tasks import health, pm2, release, web_server

PM2_VIEW_MAX_AGE = 1.0      # seconds: how old PM2's answer may be when the health gate passes


def go_live(app: AppHost, tag: str, step: Steps, on_service=None, config: int = 0) -> None:
    """Put release `tag` live with configuration version `config` (kept on the host); raise on the
    first failure."""
    step(f"switch current to {tag}")
    ecosystem = release.switch_current(app, tag, config)
    services, done, running, started_at = list(app.services), 0, None, None
    for batch in batches(services, app.handover_batch_size):
        step(f"hand over {', '.join(batch)} to {tag}")
        started_at = time.monotonic()
        running = pm2.hand_over(app, batch, tag, ecosystem, config=config)
        done += len(batch)
        if on_service:
            on_service(done, len(services))
    # The last batch's answer lists every app of the host: the restart counts right after the hand-over.
    baseline = pm2.restart_counts(app, running)
    step(f"health gate for {tag}")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pm2-list") as pool:
        # Ask PM2 while the gate probes (each costs a Node process, ~0.3-1 s under load); when the
        # gate passed more than a second after that answer, ask again: a restart in between counts.
        listing = pool.submit(contextvars.copy_context().run, _listed, app)
        # The deadline counts from the start of the last batch: every service gets all of it.
        health.health_gate(app, tag, started_at=started_at)
        apps, listed_at = listing.result()
    if time.monotonic() - listed_at > PM2_VIEW_MAX_AGE:
        apps = pm2.list_apps(app)
    problems = running_problems(apps, services, tag, baseline, config)
    if problems:
        raise health.HealthGateFailed(f"PM2 after the health gate for {tag}: " + "; ".join(problems))
    step(f"publish the frontend of {tag}")
    if release.publish_frontend(app, tag):
        web_server.reload_web_server(app)


def _listed(app: AppHost) -> tuple[list, float]:
    apps = pm2.list_apps(app)
    return apps, time.monotonic()


def is_serving(app: AppHost, tag: str, config: int = 0) -> bool:
    """Return True when `tag` is live with configuration version `config` and every service passes
    its checks reporting it."""
    if release.live_release(app) != tag:
        return False
    try:
        if pm2.running_problems(app, tag, config=config):
            return False
        health.health_gate.fn(app, tag, deadline_seconds=0)
    except Exception:  # noqa: BLE001 - any doubt means "not serving": do the work again
        return False
    return True


def the_one_host(env: Environment, environment: str, skip_hosts: list[str] | None) -> AppHost:
    """Return the app host block of an environment with one host, its pm2 checked. Raise ValueError
    when hosts to skip were given (they apply to several hosts) or there is no app block, ToolMissing
    when pm2 is missing."""
    if skip_hosts:
        raise ValueError("skip_hosts applies to several app hosts (APP_HOSTS); this environment has one")
    app = require_app_host(env, environment)
    pm2.pm2_command(app)
    return app


def require_app_host(env: Environment, environment: str, needs_repo: bool = False) -> AppHost:
    """Return the environment's app host block. Raise ValueError saying how to configure it."""
    if env.app is None:
        raise ValueError(f"block ubertruck-app-host/{environment}-app not found: set APP_ROOT, APP_REPO_URL, "
                         f"WEB_ROOT ... and run `ubertruck-ops blocks init --name {environment}`")
    if needs_repo and not env.app.repo_url:
        raise ValueError(f"block {environment}-app has no repository URL: set APP_REPO_URL and run "
                         f"`ubertruck-ops blocks init --name {environment}`")
    return env.app
