"""rollback: put a release that is still on the host back live, in seconds, without a prompt.

The story: pick the target (the release live before the current one, or the tag asked
for); take the deploy lock; switch `current`, hand each service over, pass the health
gate, publish the frontend; save PM2's list; record and report. The database is not
rolled back: migrations are additive by convention, and the backup taken before them is
named in the deploy's notice should a restore be needed.
"""

from __future__ import annotations

import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.core import notices
from ubertruck_ops.core.limits import DEPLOY_LOCK, DEPLOY_LOCK_LEASE_SECONDS
from ubertruck_ops.core.releases import check_tag, previous_release
from ubertruck_ops.core.steps import Steps
from ubertruck_ops.core.text import human_seconds, one_line
from ubertruck_ops.flows.deploy import require_app_host
from ubertruck_ops.flows.go_live import go_live, is_serving
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import pm2, release
from ubertruck_ops.tasks.locks import host_lock
from ubertruck_ops.tasks.notify import notify


@flow(name="rollback", description="Put the previous release (or a named one still on the host) back live: "
                                   "switch, graceful hand-over, health gate.")
def rollback(to: str | None = None, environment: str = "production") -> dict:
    """Roll `environment`'s application back to `to` (default: the release live before the current one).

    Args:
        to: A release tag still on the host; empty: the release live before the current one.
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
    """
    log = logger()
    step = Steps(log)
    clock = time.monotonic()
    env = load_environment(environment)
    app = require_app_host(env, environment)
    if to is not None:
        check_tag(to)
    pm2.pm2_command(app)
    run_id = str(flow_run.get_id() or "")

    step("wait for the deploy lock")
    release.prepare_host(app)
    with host_lock(app.shared_dir, DEPLOY_LOCK, app.deploy_lock_wait_seconds, DEPLOY_LOCK_LEASE_SECONDS,
                   holder=f"rollback, flow run {run_id}"):
        live = release.live_release(app)
        available = release.releases(app)
        target = to or previous_release(release.read_history(app), live, available)
        if target is None:
            raise ValueError(f"there is no earlier release on the host to roll back to (releases: "
                             f"{', '.join(available) or 'none'}; live: {live or 'none'})")
        if target not in available:
            raise ValueError(f"release {target} is not on the host (kept: {', '.join(available) or 'none'}); "
                             f"deploy it instead: ubertruck-ops run deploy --param tag={target}")
        if target == live and is_serving(app, target):
            log.info("%s is already live and healthy: nothing to do", target)
            return {"status": "already-live", "tag": target}

        release.record(app, "rollback", live, target, "started", run_id)
        try:
            go_live(app, target, step)
            step("save the PM2 process list")
            pm2.save(app)
        except Exception as exc:
            release.record(app, "rollback", live, target, "failed", run_id, detail=one_line(exc))
            notify(env.slack, notices.operation_failed(f"rollback to {target}", environment, step.current,
                                                       one_line(exc), [":rotating_light: services may be mixed; "
                                                                       "check `pm2 ls` and act by hand"]))
            raise
        release.record(app, "rollback", live, target, "succeeded", run_id)

    duration = time.monotonic() - clock
    create_markdown_artifact(key="rollback-summary", description=f"rollback to {target}",
                             markdown=f"# Rollback to `{target}`\n\n- was live: {live or 'none'}\n"
                                      f"- duration: {human_seconds(duration)}\n- health gate: passed\n")
    notify(env.slack, notices.rollback_succeeded(environment, live, target, duration))
    log.info("rolled back from %s to %s in %s", live, target, human_seconds(duration))
    return {"status": "rolled-back", "tag": target, "previous": live, "duration_seconds": round(duration, 2)}
