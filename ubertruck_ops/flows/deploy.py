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
from ubertruck_ops.core.deploy_reports import deploy_summary, release_notes, who_asked
from ubertruck_ops.core.releases import check_tag, deploy_plan, pending_migrations, releases_to_prune
from ubertruck_ops.core.text import human_seconds, one_line
from ubertruck_ops.operations.frame import Operation, operation
from ubertruck_ops.operations.go_live import require_app_host
from ubertruck_ops.operations.release_build import build_release, check_tools_and_tag, migrate
from ubertruck_ops.operations.release_checks import bake_minutes_for, checks_after_go_live
from ubertruck_ops.operations.release_switch import (
    SwitchFailed,
    already_live,
    configuration_to_run,
    locked_switch,
    switch_release,
)
from ubertruck_ops.operations.rolling import rolling_deploy
from ubertruck_ops.operations.subflows import subflow
from ubertruck_ops.tasks import app_config, git, postgres, release, run_info


@flow(name="deploy", description="Build a release tag, migrate (after a backup), switch with zero downtime, "
                                 "health-gate, and roll back by itself on failure.")
def deploy(tag: str, environment: str = "production", skip_hosts: list[str] | None = None,
           bake_minutes: float | None = None, requested_by: str | None = None) -> dict:
    """Deploy release `tag` (vX.Y.Z) to `environment`'s application host, or roll it over every app
    host behind the load balancer when APP_HOSTS names several; return what happened.

    Args:
        tag: The release tag to deploy, e.g. v1.10.0 (it must exist in the application repository).
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        skip_hosts: Several app hosts: hosts to leave out (e.g. one that is down); empty: every host.
        bake_minutes: How long to watch the access log after go-live (fractions allowed; 0: no bake);
            empty: the app block's (BAKE_MINUTES, default 5). The run ends Completed only after it.
        requested_by: Who asks for this deploy (CI passes its actor); empty: the user, automation or
            schedule Prefect recorded, else "unknown". Named in the notices and the host's history.
    """
    # Until the lock is held nothing is changed: a failure is the run's own (no notice).
    with operation(f"deploy of {tag}", environment) as op:
        env, step = op.env, op.step
        tag = check_tag(tag)
        if env.fleet is not None:
            return rolling_deploy(op, tag, skip_hosts or [], bake_minutes)
        if skip_hosts:
            raise ValueError("skip_hosts applies to several app hosts (APP_HOSTS); this environment has one")
        app = require_app_host(env, environment, needs_repo=True)
        bake = bake_minutes_for(app, bake_minutes)
        run_id = str(flow_run.get_id() or "")
        who = who_asked(requested_by, *run_info.started_by())

        step("check the tools and the tag")
        tags = check_tools_and_tag(app, tag)

        step("wait for the deploy lock")
        with locked_switch(app, f"deploy of {tag}") as live:
            plan = deploy_plan(tag, live.release, live.history, live.available,
                               config=configuration_to_run(app, env.app_config, live), live_config=live.config)
            if already_live(app, plan):
                op.log.info("%s is already live and healthy: nothing to do", tag)
                return {"status": "already-live", "tag": tag}
            notes = _release_notes(op, app, plan.live if plan.live in tags else None, tag)
            op.notify(notices.deploy_started(environment, tag, plan.live, who))
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
                switch_release(op, app, plan, run_id, detail=f"commit {commit}, requested by {who}",
                               on_service=lambda n, total: update_progress_artifact(progress, 55.0 + 35.0 * n / total),
                               after_go_live=checks_after_go_live(app, env.thresholds, bake, step))
            step("prune old releases")
            pruned = release.remove_releases(app, releases_to_prune(release.releases(app), tag, plan.put_back,
                                                                    app.keep_releases))
            # Like releases: the live configuration, the one a rollback or put-back returns to, the newest few.
            app_config.prune(app, {plan.config, plan.live_config}, app.keep_releases)
            update_progress_artifact(progress, 100.0)

        duration = op.elapsed
        op.publish("deploy-summary", f"deploy {tag}",
                   deploy_summary(tag, commit, plan.live, app.services, migrations, backup_id, pruned, duration,
                                  release.read_history(app), who, notes),
                   notices.deploy_succeeded(environment, tag, plan.live, duration, migrations, backup_id,
                                            release.release_info(app, tag).get("warnings", []), who, notes))
        op.log.info("deploy of %s complete in %s", tag, human_seconds(duration))
        return {"status": "deployed", "tag": tag, "commit": commit, "previous": plan.live, "requested_by": who,
                "commits": notes, "migrations": migrations,
                "backup_id": backup_id, "pruned": pruned, "duration_seconds": round(duration, 2)}


def _release_notes(op: Operation, app, live: str | None, tag: str) -> list[str]:
    """The first lines of the commits `tag` brings over the live tag, as the notice lists them (empty,
    with a warning, when the repository's history cannot be read: the deploy goes on)."""
    try:
        return release_notes(git.commit_subjects(app.repo_url, live, tag))
    except RuntimeError as exc:
        op.log.warning("no release notes: %s", one_line(exc))
        return []


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
