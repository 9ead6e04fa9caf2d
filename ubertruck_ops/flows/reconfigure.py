"""reconfigure: give the live release the configuration block's variables, with zero downtime.

The story: read the configuration block (`<env>-app-config`, from APP_ENV_FILE or the UI); take
the deploy lock; keep the new variables on the host as the next configuration version; hand each
service over to the live release running with them (a new PM2 app that takes over the port, as a
deploy's does), pass the health gate; save PM2's list. A failure puts the configuration that was
live back by itself and ends the run Failed. Several hosts: one after another, behind the balancer.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from ubertruck_ops.core import notices
from ubertruck_ops.core.app_config import config_label
from ubertruck_ops.core.releases import reconfigure_plan
from ubertruck_ops.core.text import human_seconds, one_line
from ubertruck_ops.operations.frame import Operation, operation
from ubertruck_ops.operations.go_live import the_one_host
from ubertruck_ops.operations.release_switch import (
    SwitchFailed,
    already_live,
    configuration_to_run,
    locked_switch,
    switch_release,
)
from ubertruck_ops.operations.rolling import rolling_reconfigure
from ubertruck_ops.tasks import app_config


@flow(name="reconfigure", description="Give the live release the app configuration block's variables: graceful "
                                      "hand-over, health gate, the old configuration put back on failure.")
def reconfigure(environment: str = "production", skip_hosts: list[str] | None = None) -> dict:
    """Run `environment`'s live release with the variables of its app configuration block (saved by
    `blocks init` from APP_ENV_FILE, or edited in the UI); return what happened.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        skip_hosts: Several app hosts: hosts to leave out (e.g. one that is down); empty: every host.
    """
    with operation("reconfigure", environment) as op:
        if op.env.app_config is None:
            raise ValueError(f"block ubertruck-app-configuration/{environment}-app-config not found: set "
                             f"APP_ENV_FILE=/path/.env.production and run `ubertruck-ops blocks init --name "
                             f"{environment}`")
        if op.env.fleet is not None:
            return rolling_reconfigure(op, skip_hosts or [])
        app = the_one_host(op.env, environment, skip_hosts)
        run_id = str(flow_run.get_id() or "")

        op.step("wait for the deploy lock")
        with locked_switch(app, "reconfigure") as live:
            plan = reconfigure_plan(live.release, live.config, configuration_to_run(app, op.env.app_config, live))
            if already_live(app, plan):
                op.log.info("%s already runs with %s: nothing to do", plan.tag, config_label(plan.config))
                return {"status": "already-live", "tag": plan.tag, "config": plan.config}
            op.what = f"configuration change of {plan.tag}"
            with op.failure_says(handler=lambda exc: _tell_failed_change(op, plan.tag, exc)):
                switch_release(op, app, plan, run_id)
            op.step("forget configurations no switch returns to")
            app_config.prune(app, {plan.config, plan.live_config}, app.keep_releases)

        duration = op.elapsed
        changed = f"{config_label(plan.live_config)} -> *{config_label(plan.config)}*"
        op.publish("reconfigure-summary", f"reconfigure {plan.tag}",
                   f"# Reconfigure {plan.tag}\n\n{changed}\n\nduration: {human_seconds(duration)}\n",
                   notices.reconfigure_succeeded(environment, plan.tag, changed, duration))
        op.log.info("%s runs with %s in %s", plan.tag, config_label(plan.config), human_seconds(duration))
        return {"status": "reconfigured", "tag": plan.tag, "config": plan.config, "previous_config": plan.live_config,
                "duration_seconds": round(duration, 2)}


def _tell_failed_change(op: Operation, tag: str, exc: Exception) -> None:
    """Post what a failed configuration change left live: the old configuration back, or why not."""
    if not isinstance(exc, SwitchFailed):
        op.failure_notice(exc, ["nothing live was changed"])
    elif exc.put_back is None or exc.put_back_error is not None:
        why = one_line(exc.put_back_error) if exc.put_back_error else "nothing to put back"
        op.failure_notice(exc.error, [f":rotating_light: putting the old configuration back failed ({why}): "
                                      "check `pm2 ls` and act by hand"], at=exc.failed_at)
    else:
        op.failure_alert(notices.reconfigure_put_back(op.environment, tag, exc.put_back.config, exc.failed_at,
                                                      one_line(exc.error)), exc.error)
