"""What one app host of a fleet does when a rolling deploy or rollback asks it (flows/host_release.py
runs these on the host's own worker): build a tag, apply migrations, go live, put back what it ran
before a given run, roll back.

Each step that changes what is live holds the host's deploy lock and writes the host's own history
(the rolling deploy's flow run id on every entry), so `put_back` needs nothing but that id: the
host knows what it ran before.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from prefect.runtime import flow_run

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.core.fleet import refuse_if_expired
from ubertruck_ops.core.limits import DEPLOY_LOCK
from ubertruck_ops.core.releases import pending_migrations, put_back_for_run, release_to_put_back, rollback_target
from ubertruck_ops.core.text import one_line
from ubertruck_ops.operations.frame import Operation
from ubertruck_ops.operations.go_live import go_live, is_serving
from ubertruck_ops.operations.release_build import build_release, migrate
from ubertruck_ops.operations.subflows import subflow
from ubertruck_ops.tasks import git, pm2, postgres, release
from ubertruck_ops.tasks.locks import flock_only


@contextmanager
def _locked(app: AppHost, what: str, not_after: str | None = None) -> Iterator[None]:
    # The host's own lock file (a single-host deploy on this host holds it too); the environment's
    # deploy slot is the rolling parent run's, so the hosts of one batch switch at once.
    release.prepare_host(app)
    with flock_only(app.shared_dir, DEPLOY_LOCK, app.deploy_lock_wait_seconds,
                    holder=f"{what}, flow run {flow_run.get_id() or ''}"):
        # Waiting for the lock may have outlasted the rolling deploy's patience: look again.
        refuse_if_expired(not_after, datetime.now(timezone.utc), what)
        yield


def build(op: Operation, app: AppHost, host: str, tag: str, not_after: str | None = None) -> dict:
    """Build `tag` into its release folder on this host (nothing live changes); return its commit."""
    op.step(f"check the tools and the tag on {host}")
    pm2.pm2_command(app)
    tags = git.remote_tags(app.repo_url)
    if tag not in tags:
        raise ValueError(f"tag {tag} does not exist in {app.repo_url}; nothing was changed on {host}")
    with _locked(app, f"build of {tag}", not_after):
        op.step(f"build {tag} on {host}")
        return {"host": host, "commit": build_release(app, tag, tags[tag])}


def apply_migrations(op: Operation, app: AppHost, host: str, tag: str, not_after: str | None = None) -> dict:
    """Apply `tag`'s pending migrations from its release folder on this host (once per deploy),
    after a backup of the database when there are any. Refuse (StepExpired) when the backup ends
    after `not_after`: the rolling deploy has stopped waiting, and reported that nothing changed."""
    env, backup_id = op.env, None
    pending = pending_migrations(release.migration_files(app, tag),
                                 postgres.applied_migrations(env.database, app.migrations_table))
    if pending:
        op.step("back up the database before migrating")
        backup_id = subflow("nightly-backup")(environment=op.environment)["backup_id"]
        refuse_if_expired(not_after, datetime.now(timezone.utc), f"migrations of {tag} on {host}")
        op.step(f"apply migrations {', '.join(pending)} on {host}")
        migrate(env, app, tag, pending, backup_id)
    return {"host": host, "migrations": pending, "backup_id": backup_id}


def switch(op: Operation, app: AppHost, host: str, tag: str, action: str, run_id: str,
           not_after: str | None = None) -> dict:
    """Put `tag` live on this host for the rolling `action` (deploy | rollback) of flow run `run_id`.
    A failure puts the host back on what it ran before, then raises."""
    with _locked(app, f"{action} to {tag}", not_after):
        live = release.live_release(app)
        if live == tag and is_serving(app, tag):
            return {"host": host, "status": "already-live", "tag": tag, "previous": live}
        previous = release_to_put_back(tag, live, release.read_history(app), release.releases(app))
        release.record(app, action, previous, tag, "started", run_id)
        try:
            go_live(app, tag, op.step)
            pm2.save(app)
        except Exception as exc:
            _put_back_now(op, app, host, action, tag, previous, run_id, exc)
            raise
        release.record(app, action, previous, tag, "succeeded", run_id)
        return {"host": host, "status": "switched", "tag": tag, "previous": previous}


def _put_back_now(op: Operation, app: AppHost, host: str, action: str, tag: str, previous: str | None, run_id: str,
                  exc: Exception) -> None:
    if previous is None or not release.is_complete(app, previous):
        release.record(app, action, previous, tag, "failed", run_id, detail=one_line(exc))
        return
    op.log.error("%s of %s failed on %s at '%s': %s; putting %s back", action, tag, host, op.step.current,
                 one_line(exc), previous)
    go_live(app, previous, op.step)
    pm2.save(app)
    release.record(app, f"auto-{'rollback' if action == 'deploy' else 'put-back'}", tag, previous, "succeeded",
                   run_id, detail=one_line(exc))


def put_back(op: Operation, app: AppHost, host: str, run_id: str, not_after: str | None = None) -> dict:
    """Put this host back on what it ran before flow run `run_id` switched it (nothing when that run
    never switched it)."""
    with _locked(app, f"put-back after flow run {run_id}", not_after):
        before = put_back_for_run(release.read_history(app), run_id)
        live = release.live_release(app)
        if before is None or (before == live and is_serving(app, before)):
            return {"host": host, "status": "unchanged", "tag": live}
        go_live(app, before, op.step)
        pm2.save(app)
        release.record(app, "put-back", live, before, "succeeded", run_id)
        return {"host": host, "status": "put-back", "tag": before, "was": live}


def roll_back(op: Operation, app: AppHost, host: str, to: str | None, run_id: str,
              not_after: str | None = None) -> dict:
    """Roll this host back to `to` (None: what it ran before the current release), as one host of a
    rolling rollback."""
    target = rollback_target(to, release.read_history(app), release.live_release(app), release.releases(app))
    return switch(op, app, host, target, "rollback", run_id, not_after)
