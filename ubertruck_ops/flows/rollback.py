"""rollback: put a release that is still on the host back live, in seconds, without a prompt.

The story: pick the target (the release live before the current one, or the tag asked
for); take the deploy lock; switch `current`, hand each service over, pass the health
gate, publish the frontend; save PM2's list; record and report. The database is not
rolled back: migrations are additive by convention, and the backup taken before them is
named in the deploy's notice should a restore be needed.
"""

from __future__ import annotations

from prefect import flow
from prefect.runtime import flow_run

from ubertruck_ops.core import notices
from ubertruck_ops.core.deploy_reports import rollback_summary
from ubertruck_ops.core.releases import check_tag, rollback_plan
from ubertruck_ops.core.text import human_seconds
from ubertruck_ops.operations.frame import operation
from ubertruck_ops.operations.go_live import the_one_host
from ubertruck_ops.operations.release_switch import SwitchFailed, already_live, locked_switch, switch_release
from ubertruck_ops.operations.rolling import rolling_rollback


@flow(name="rollback", description="Put the previous release (or a named one still on the host) back live: "
                                   "switch, graceful hand-over, health gate.")
def rollback(to: str | None = None, environment: str = "production", skip_hosts: list[str] | None = None) -> dict:
    """Roll `environment`'s application back to `to` (default: the release live before the current
    one), host by host behind the load balancer when APP_HOSTS names several.

    Args:
        to: A release tag still on the host; empty: the release live before the current one.
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        skip_hosts: Several app hosts: hosts to leave out (e.g. one that is down); empty: every host.
    """
    # Until the switch a failure changed nothing: it is the run's own (no notice).
    with operation("rollback", environment) as op:
        if to is not None:
            check_tag(to)
        if op.env.fleet is not None:
            return rolling_rollback(op, to, skip_hosts or [])
        app = the_one_host(op.env, environment, skip_hosts)
        run_id = str(flow_run.get_id() or "")

        op.step("wait for the deploy lock")
        with locked_switch(app, "rollback") as live:
            plan = rollback_plan(to, live.release, live.history, live.available, live.config)
            target = plan.tag
            if already_live(app, plan):
                op.log.info("%s is already live and healthy: nothing to do", target)
                return {"status": "already-live", "tag": target}

            op.what = f"rollback to {target}"

            def failed(exc: Exception) -> None:
                # A rollback puts nothing back: what it left is the release it was asked to leave.
                op.failure_notice(exc.error if isinstance(exc, SwitchFailed) else exc,
                                  [":rotating_light: services may be mixed; check `pm2 ls` and act by hand"])

            with op.failure_says(handler=failed):
                switch_release(op, app, plan, run_id)

        duration = op.elapsed
        op.publish("rollback-summary", f"rollback to {target}",
                   rollback_summary(target, plan.live, duration),
                   notices.rollback_succeeded(environment, plan.live, target, duration))
        op.log.info("rolled back from %s to %s in %s", plan.live, target, human_seconds(duration))
        return {"status": "rolled-back", "tag": target, "previous": plan.live, "duration_seconds": round(duration, 2)}
