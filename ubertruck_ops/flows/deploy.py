"""deploy: put release `tag` live on the application host with zero downtime.

The story: check the tag and the tools; take the deploy lock; build the exact tag into
its own release folder (nothing live changes until this succeeds); when the release
brings new migrations, back up the database and apply them; switch `current`, hand each
service over to the new release, pass the health gate, publish the frontend. Any failure
after the switch puts the previous release back by itself and ends the run Failed.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from ubertruck_ops.core import notices
from ubertruck_ops.core.deploy_reports import deploy_summary
from ubertruck_ops.core.releases import check_tag, deploy_plan, pending_migrations, releases_to_prune
from ubertruck_ops.core.text import human_seconds, one_line
from ubertruck_ops.operations.frame import Operation, operation
from ubertruck_ops.operations.go_live import require_app_host
from ubertruck_ops.operations.release_build import build_release, check_tools_and_tag, migrate
from ubertruck_ops.operations.release_switch import SwitchFailed, already_live, locked_switch, switch_release
from ubertruck_ops.operations.rolling import rolling_deploy
from ubertruck_ops.operations.subflows import subflow
from ubertruck_ops.tasks import postgres, release


@flow(name="deploy", description="Build a release tag, migrate (after a backup), switch with zero downtime, "
                                 "health-gate, and roll back by itself on failure.")
def deploy(tag: str, environment: str = "production", skip_hosts: list[str] | None = None) -> dict:
    """Deploy release `tag` (vX.Y.Z) to `environment`'s application host, or roll it over every app
    host behind the load balancer when APP_HOSTS names several; return what happened.

    Args:
        tag: The release tag to deploy, e.g. v1.10.0 (it must exist in the application repository).
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        skip_hosts: Several app hosts: hosts to leave out (e.g. one that is down); empty: every host.
    """
    # Until the lock is held nothing is changed: a failure is the run's own (no notice).
    with operation(f"deploy of {tag}", environment) as op:
        env, step = op.env, op.step
        tag = check_tag(tag)
        if env.fleet is not None:
            return rolling_deploy(op, tag, skip_hosts or [])
        if skip_hosts:
            raise ValueError("skip_hosts applies to several app hosts (APP_HOSTS); this environment has one")
        app = require_app_host(env, environment, needs_repo=True)
        run_id = str(flow_run.get_id() or "")

        step("check the tools and the tag")
        tags = check_tools_and_tag(app, tag)

        step("wait for the deploy lock")
        with locked_switch(app, f"deploy of {tag}") as live:
            plan = deploy_plan(tag, live.release, live.history, live.available)
            if already_live(app, plan):
                op.log.info("%s is already live and healthy: nothing to do", tag)
                return {"status": "already-live", "tag": tag}
            op.notify(notices.deploy_started(environment, tag, plan.live))
            progress = create_progress_artifact(0.0, key="deploy-progress", description=f"deploy {tag}")
            migrations: list[str] = []
            backup_id = None

            with op.failure_says("nothing live was changed"):
                step(f"build {tag}")
                commit = build_release(app, tag, tags[tag])
                update_progress_artifact(progress, 40.0)

                step("check for new migrations")
                migrations = pending_migrations(release.migration_files(app, tag),
                                                postgres.applied_migrations(env.database, app.migrations_table))
                if migrations:
                    step("back up the database before migrating")
                    backup_id = subflow("nightly-backup")(environment=environment)["backup_id"]
                    step(f"apply migrations {', '.join(migrations)}")
                    migrate(env, app, tag, migrations, backup_id)
                update_progress_artifact(progress, 55.0)

            # A failure puts the previous release back under this same lock; the handler only tells.
            with op.failure_says(handler=lambda exc: _tell_failed_switch(op, tag, exc)):
                switch_release(op, app, plan, run_id, detail=f"commit {commit}",
                               on_service=lambda n, total: update_progress_artifact(progress, 55.0 + 35.0 * n / total))
            step("prune old releases")
            pruned = release.remove_releases(app, releases_to_prune(release.releases(app), tag, plan.put_back,
                                                                    app.keep_releases))
            update_progress_artifact(progress, 100.0)

        duration = op.elapsed
        op.publish("deploy-summary", f"deploy {tag}",
                   deploy_summary(tag, commit, plan.live, app.services, migrations, backup_id, pruned, duration,
                                  release.read_history(app)),
                   notices.deploy_succeeded(environment, tag, plan.live, duration, migrations, backup_id))
        op.log.info("deploy of %s complete in %s", tag, human_seconds(duration))
        return {"status": "deployed", "tag": tag, "commit": commit, "previous": plan.live, "migrations": migrations,
                "backup_id": backup_id, "pruned": pruned, "duration_seconds": round(duration, 2)}


def _tell_failed_switch(op: Operation, tag: str, exc: Exception) -> None:
    """Post what a failure past the switch left live: the previous release back, or why it is not."""
    if not isinstance(exc, SwitchFailed):     # failed before going live (recording it): nothing changed
        op.failure_notice(exc, ["nothing live was changed"])
    elif exc.put_back is None:
        op.failure_notice(exc.error, ["no previous release on the host to roll back to"], at=exc.failed_at)
    elif exc.put_back_error is not None:
        alarm = (f":rotating_light: the automatic rollback to {exc.put_back.release} ALSO FAILED at "
                 f"'{exc.put_back_failed_at}': {one_line(exc.put_back_error)} - run `ubertruck-ops run rollback` or "
                 "act by hand")
        op.failure_notice(exc.error, [alarm], at=exc.failed_at)
    else:
        op.failure_alert(notices.deploy_rolled_back(op.environment, tag, exc.put_back.release, exc.failed_at,
                                                    one_line(exc.error)), exc.error)
