"""host-release: one app host's part of a rolling deploy or rollback, run on that host's worker.

The rolling deploy (flows/deploy.py, flows/rollback.py with APP_HOSTS set) starts this flow's
deployment once per host and step, into the host's own work queue (`app-host-<host>`), so each
step runs where the releases and PM2 are: build the tag, apply the migrations (the first host
only), go live, put back what ran before a given run, roll back. Operators do not start it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from prefect import flow

from ubertruck_ops.blocks.environment import load_host_app
from ubertruck_ops.core.fleet import refuse_if_expired
from ubertruck_ops.core.releases import check_tag
from ubertruck_ops.operations import host_steps
from ubertruck_ops.operations.frame import operation


@flow(name="host-release", description="One app host's step of a rolling deploy or rollback (started by deploy and "
                                       "rollback into the host's work queue).")
def host_release(environment: str = "production", host: str = "", step: Literal[
        "build", "migrate", "go-live", "put-back", "rollback", "reconfigure"] = "build", tag: str | None = None,
                 run_id: str = "", not_after: str | None = None, undo_run: str | None = None) -> dict:
    """Do `step` on app host `host` of `environment`; return what it did.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        host: The app host (one of APP_HOSTS); its app block is `<env>-app-<host>`, else `<env>-app`.
        step: build, migrate, go-live, put-back (what ran before run_id), rollback (to tag, or the previous)
            or reconfigure (the live release with the environment's configuration block).
        tag: The release tag (build, migrate, go-live; rollback: the target, empty for the previous release).
        run_id: The rolling deploy's or rollback's flow run id, written into the host's history.
        not_after: When the rolling deploy stops waiting for this step (ISO 8601 with offset): a worker
            that starts it later refuses, so a step the deploy gave up on never changes the host.
        undo_run: rollback without a tag: the failed deploy's flow run id; the host goes back to what it
            ran before that run (or stays as it is when that run never switched it).
    """
    # The parent run reports the whole rolling operation; a host step's failure is its state.
    with operation(f"{step} on {host}", environment) as op:
        if not host:
            raise ValueError("host-release needs a host")
        # First, before anything is read or changed: a worker that came back late must not act.
        refuse_if_expired(not_after, datetime.now(UTC), f"{step} on {host}")
        app = load_host_app(environment, host)
        if step in ("build", "migrate", "go-live"):
            if not tag:
                raise ValueError(f"step {step} needs a tag")
            check_tag(tag)
        if step == "build":
            return host_steps.build(op, app, host, tag, not_after)
        if step == "migrate":
            return host_steps.apply_migrations(op, app, host, tag, not_after)
        if step == "go-live":
            return host_steps.switch(op, app, host, tag, "deploy", run_id, not_after)
        if step == "put-back":
            return host_steps.put_back(op, app, host, run_id, not_after)
        if step == "reconfigure":
            return host_steps.reconfigure(op, app, host, run_id, not_after)
        return host_steps.roll_back(op, app, host, tag and check_tag(tag), run_id, not_after, undo_run)
