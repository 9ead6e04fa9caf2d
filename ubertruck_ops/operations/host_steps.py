"""What one app host of a fleet does when a rolling deploy or rollback asks it (flows/host_release.py
runs these on the host's own worker): build a tag, apply migrations, go live, put back what it ran
before a given run, roll back.

Each step that changes what is live holds the host's deploy lock (its lock file; the rolling parent
run holds the environment's deploy slot, so the hosts of one batch switch at once) and goes through
operations/release_switch.py, which writes the host's own history (the rolling deploy's flow run id
on every entry), so `put_back` needs nothing but that id: the host knows what it ran before.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.core.fleet import refuse_if_expired
from ubertruck_ops.core.releases import (
    deploy_plan,
    host_put_back_plan,
    pending_migrations,
    put_back_for_run,
    reconfigure_plan,
    rollback_target,
    undo_plan,
)
from ubertruck_ops.operations.frame import Operation
from ubertruck_ops.operations.release_build import build_release, check_tools_and_tag, migrate
from ubertruck_ops.operations.release_switch import (
    already_live,
    configuration_to_run,
    locked_switch,
    switch_release,
)
from ubertruck_ops.operations.subflows import subflow
from ubertruck_ops.tasks import postgres, release


def build(op: Operation, app: AppHost, host: str, tag: str, not_after: str | None = None) -> dict:
    """Build `tag` into its release folder on this host (nothing live changes); return its commit."""
    op.step(f"check the tools and the tag on {host}")
    tags = check_tools_and_tag(app, tag, host)
    with locked_switch(app, f"build of {tag}", slot=False, not_after=not_after):
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
        refuse_if_expired(not_after, datetime.now(UTC), f"migrations of {tag} on {host}")
        op.step(f"apply migrations {', '.join(pending)} on {host}")
        migrate(env, app, tag, pending, backup_id)
    return {"host": host, "migrations": pending, "backup_id": backup_id}


def switch(op: Operation, app: AppHost, host: str, tag: str | None, action: str, run_id: str,
           not_after: str | None = None, undo_run: str | None = None) -> dict:
    """Put `tag` live on this host for the rolling `action` (deploy | rollback; a rollback to None: the
    release the host ran before its current one, or with `undo_run` what it ran before that failed
    deploy) of flow run `run_id`. A failure of a deploy puts the host back on what it ran before, then
    raises SwitchFailed."""
    with locked_switch(app, f"{action} to {tag or 'the previous release'}", slot=False, not_after=not_after) as live:
        if action == "deploy":
            # A rolling deploy brings the block's configuration; a rollback keeps the live one (as on one host).
            plan = deploy_plan(tag, live.release, live.history, live.available, action=action,
                               config=configuration_to_run(app, op.env.app_config, live), live_config=live.config)
        elif tag is None and undo_run:
            plan = undo_plan(undo_run, live.release, live.history, live.config)
        else:
            plan = deploy_plan(rollback_target(tag, live.history, live.release, live.available), live.release,
                               live.history, live.available, action=action, config=live.config,
                               live_config=live.config)
        if already_live(app, plan):
            return {"host": host, "status": "already-live", "tag": plan.tag, "previous": plan.live}
        switch_release(op, app, plan, run_id)
        return {"host": host, "status": "switched", "tag": plan.tag, "previous": plan.put_back}


def put_back(op: Operation, app: AppHost, host: str, run_id: str, not_after: str | None = None) -> dict:
    """Put this host back on what it ran before flow run `run_id` switched it (nothing when that run
    never switched it)."""
    with locked_switch(app, f"put-back after flow run {run_id}", slot=False, not_after=not_after) as live:
        plan = host_put_back_plan(put_back_for_run(live.history, run_id), live.release, live.config)
        if plan is None or already_live(app, plan):
            return {"host": host, "status": "unchanged", "tag": live.release}
        switch_release(op, app, plan, run_id)
        return {"host": host, "status": "put-back", "tag": plan.tag, "was": plan.live}


def reconfigure(op: Operation, app: AppHost, host: str, run_id: str, not_after: str | None = None) -> dict:
    """Put this host's live release live again with the environment's configuration block, as one
    host of a rolling reconfigure. A failure puts the host back on the configuration it ran."""
    with locked_switch(app, "reconfigure", slot=False, not_after=not_after) as live:
        plan = reconfigure_plan(live.release, live.config, configuration_to_run(app, op.env.app_config, live))
        if already_live(app, plan):
            return {"host": host, "status": "already-live", "tag": plan.tag, "config": plan.config,
                    "previous_config": plan.live_config}
        switch_release(op, app, plan, run_id)
        return {"host": host, "status": "switched", "tag": plan.tag, "config": plan.config,
                "previous_config": plan.live_config}


def roll_back(op: Operation, app: AppHost, host: str, to: str | None, run_id: str,
              not_after: str | None = None, undo_run: str | None = None) -> dict:
    """Roll this host back to `to` (None: what it ran before the current release, or before the
    failed deploy `undo_run`), as one host of a rolling rollback."""
    return switch(op, app, host, to, "rollback", run_id, not_after, undo_run)
