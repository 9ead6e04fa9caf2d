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

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.core import notices
from ubertruck_ops.core.limits import DEPLOY_LOCK, DEPLOY_LOCK_LEASE_SECONDS
from ubertruck_ops.core.releases import (check_tag, pending_migrations, release_to_put_back, releases_to_prune,
                                         version_key)
from ubertruck_ops.core.text import human_seconds, one_line
from ubertruck_ops.operations.frame import Operation, operation
from ubertruck_ops.operations.go_live import go_live, is_serving, require_app_host
from ubertruck_ops.operations.release_build import build_release, migrate
from ubertruck_ops.operations.rolling import rolling_deploy
from ubertruck_ops.operations.subflows import subflow
from ubertruck_ops.tasks import git, pm2, postgres, release
from ubertruck_ops.tasks.locks import host_lock


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
        pm2.pm2_command(app)          # node, npm and pm2, each named with its install command when missing
        tags = git.remote_tags(app.repo_url)
        if tag not in tags:
            newest = ", ".join(sorted(tags, key=version_key)[-5:]) or "none"
            raise ValueError(f"tag {tag} does not exist in {app.repo_url} (newest tags: {newest}); nothing was changed")

        step("wait for the deploy lock")
        release.prepare_host(app)
        with host_lock(app.shared_dir, DEPLOY_LOCK, app.deploy_lock_wait_seconds, DEPLOY_LOCK_LEASE_SECONDS,
                       holder=f"deploy of {tag}, flow run {run_id}"):
            live = release.live_release(app)
            if live == tag and is_serving(app, tag):
                op.log.info("%s is already live and healthy: nothing to do", tag)
                return {"status": "already-live", "tag": tag}
            previous = release_to_put_back(tag, live, release.read_history(app), release.releases(app))
            op.notify(notices.deploy_started(environment, tag, live))
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

                # From what was live before: on a redeploy of an unhealthy live tag that is `previous`, not the tag.
                release.record(app, "deploy", previous, tag, "started", run_id)
            with op.failure_says(handler=lambda exc: _put_back(op, app, tag, previous, exc, run_id)):
                go_live(app, tag, step,
                        on_service=lambda n, total: update_progress_artifact(progress, 55.0 + 35.0 * n / total))

            step("save the PM2 process list")
            pm2.save(app)
            release.record(app, "deploy", previous, tag, "succeeded", run_id, detail=f"commit {commit}")
            step("prune old releases")
            pruned = release.remove_releases(app, releases_to_prune(release.releases(app), tag, previous,
                                                                    app.keep_releases))
            update_progress_artifact(progress, 100.0)

        duration = op.elapsed
        op.publish("deploy-summary", f"deploy {tag}",
                   _summary(app, tag, commit, live, migrations, backup_id, pruned, duration),
                   notices.deploy_succeeded(environment, tag, live, duration, migrations, backup_id))
        op.log.info("deploy of %s complete in %s", tag, human_seconds(duration))
        return {"status": "deployed", "tag": tag, "commit": commit, "previous": live, "migrations": migrations,
                "backup_id": backup_id, "pruned": pruned, "duration_seconds": round(duration, 2)}


def _put_back(op: Operation, app: AppHost, tag: str, previous: str | None, exc: Exception, run_id: str) -> None:
    """After a failure past the switch: put `previous` back live (switch, hand over, gate) and say so."""
    failed_at, error = op.step.current, one_line(exc)
    if previous is None or not release.is_complete(app, previous):
        release.record(app, "deploy", None, tag, "failed", run_id, detail=error)
        op.failure_notice(exc, ["no previous release on the host to roll back to"])
        return
    op.log.error("deploy of %s failed at '%s': %s; rolling back to %s", tag, failed_at, error, previous)
    try:
        go_live(app, previous, op.step)
        pm2.save(app)
    except Exception as again:  # noqa: BLE001 - report both; the original failure is what the run raises
        release.record(app, "auto-rollback", tag, previous, "failed", run_id, detail=one_line(again))
        op.failure_notice(exc, [f":rotating_light: the automatic rollback to {previous} ALSO FAILED at "
                                f"'{op.step.current}': {one_line(again)} - run `ubertruck-ops run rollback` or act "
                                "by hand"], at=failed_at)
        return
    release.record(app, "auto-rollback", tag, previous, "succeeded", run_id, detail=error)
    op.notify(notices.deploy_rolled_back(op.environment, tag, previous, failed_at, error))


def _summary(app: AppHost, tag: str, commit: str, previous: str | None, migrations: list[str], backup_id: str | None,
             pruned: list[str], duration: float) -> str:
    history = release.read_history(app)[-10:]
    rows = "\n".join(f"| {h.at[:19]} | {h.action} | {h.from_release or '-'} | {h.to_release} | {h.outcome} |"
                     for h in reversed(history))
    return f"""# Deploy `{tag}`

- commit: `{commit}`
- previous release: {previous or 'none'}
- duration: {human_seconds(duration)}
- services: {', '.join(f'{s}:{p}' for s, p in app.services.items())} (PM2 cluster mode, handed over one by one)
- migrations: {', '.join(migrations) or 'none new'}{f' (backup `{backup_id}` first)' if backup_id else ''}
- releases pruned: {', '.join(pruned) or 'none'}

| at (UTC) | action | from | to | outcome |
|---|---|---|---|---|
{rows}
"""

