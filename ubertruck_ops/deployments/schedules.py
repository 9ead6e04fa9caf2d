"""Every deployment, its schedule and where it runs: the one source of truth.

`prefect.yaml` is rendered from this (`ubertruck-ops deployments-yaml > prefect.yaml`; a test
fails when the committed file differs) and `ubertruck-ops serve` builds its deployments
from it, so the two cannot drift. Times are the guide's, in India time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from ubertruck_ops.core.fleet import WORK_POOL  # every deployment's pool (the app hosts' queues too)

TIMEZONE = "Asia/Kolkata"
# Deploys, rollbacks and the checks that read PM2 and the services' logs must run on the
# application host; backups, restores and drills on the backup host.
APP_HOST_QUEUE = "app-host"
BACKUP_QUEUE = "backups"


@dataclass(frozen=True)
class DeploymentSpec:
    flow: str                      # the Prefect flow name
    entrypoint: str                # path:function, relative to the project folder
    description: str
    queue: str
    cron: str | None = None        # in TIMEZONE; None: run by hand, from CI or by another flow
    tags: tuple[str, ...] = ()
    concurrency_limit: int | None = 1
    parameters: dict = field(default_factory=dict)
    # Hours without a Completed run after which the server itself posts "missing" to Slack (its
    # period plus a grace; None: not expected on a clock). deployments/automations.py reads it.
    missing_after_hours: float | None = None


DEPLOYMENTS = (
    DeploymentSpec("nightly-backup", "ubertruck_ops/flows/nightly_backup.py:nightly_backup",
                   "02:00 IST: encrypted logical backup of the database plus app and config archives.",
                   BACKUP_QUEUE, "0 2 * * *", ("backup",), missing_after_hours=26),
    DeploymentSpec("incremental-backup", "ubertruck_ops/flows/incremental_backup.py:incremental_backup",
                   "Every 6 hours, in the server's tier: PostgreSQL 17+ incremental, base + WAL recovery point "
                   "(13-16), or RDS snapshot.",
                   BACKUP_QUEUE, "0 */6 * * *", ("backup",), missing_after_hours=7),
    DeploymentSpec("restore", "ubertruck_ops/flows/restore.py:restore",
                   "By hand: restore a backup (confirm= must name a database that is overwritten).",
                   BACKUP_QUEUE, None, ("restore",)),
    DeploymentSpec("restore-drill", "ubertruck_ops/flows/restore_drill.py:restore_drill",
                   "By hand (monthly-maintenance runs it): restore into a throwaway target and verify.",
                   BACKUP_QUEUE, None, ("restore", "drill")),
    DeploymentSpec("deploy", "ubertruck_ops/flows/deploy.py:deploy",
                   "From CI on a v* tag, or by hand: build, migrate, zero-downtime switch, automatic rollback.",
                   APP_HOST_QUEUE, None, ("release",)),
    DeploymentSpec("rollback", "ubertruck_ops/flows/rollback.py:rollback",
                   "By hand: put the previous release (or to=<tag>) back live in seconds.",
                   APP_HOST_QUEUE, None, ("release",)),
    DeploymentSpec("reconfigure", "ubertruck_ops/flows/reconfigure.py:reconfigure",
                   "By hand after blocks init or a UI edit changed the app configuration: the live release with "
                   "the new variables, zero downtime, the old configuration put back on failure.",
                   APP_HOST_QUEUE, None, ("release",)),
    DeploymentSpec("host-release", "ubertruck_ops/flows/host_release.py:host_release",
                   "Started by deploy, rollback and reconfigure: one app host's step (build, migrate, go-live, put-back, "
                   "rollback, reconfigure), "
                   "run into that host's queue app-host-<host>.", APP_HOST_QUEUE, None, ("release",),
                   concurrency_limit=None),
    DeploymentSpec("morning-checklist", "ubertruck_ops/flows/checklists.py:morning_checklist",
                   "09:00 IST: service health, overnight alerts, backup, error logs, disk, PM2, response times, jobs.",
                   APP_HOST_QUEUE, "0 9 * * *", ("checklist",), missing_after_hours=25),
    DeploymentSpec("afternoon-checklist", "ubertruck_ops/flows/checklists.py:afternoon_checklist",
                   "14:00 IST: active users, booking success, settlements, response times, connections, caches.",
                   APP_HOST_QUEUE, "0 14 * * *", ("checklist",), missing_after_hours=25),
    DeploymentSpec("evening-checklist", "ubertruck_ops/flows/checklists.py:evening_checklist",
                   "18:00 IST: the day's metrics and status report, security alerts, backup schedules, resources.",
                   APP_HOST_QUEUE, "0 18 * * *", ("checklist",), missing_after_hours=25),
    DeploymentSpec("weekly-maintenance", "ubertruck_ops/flows/maintenance.py:weekly_maintenance",
                   "Sunday 03:00 IST: VACUUM ANALYZE, cache clean-up, log rotation, updates review.",
                   APP_HOST_QUEUE, "0 3 * * 0", ("maintenance",), missing_after_hours=7 * 24 + 2),
    DeploymentSpec("monthly-maintenance", "ubertruck_ops/flows/maintenance.py:monthly_maintenance",
                   "1st of the month 04:00 IST: TLS expiry, restore drill, performance review, capacity planning.",
                   BACKUP_QUEUE, "0 4 1 * *", ("maintenance", "drill"), missing_after_hours=31 * 24 + 2),
)


def deployment_name(environment: str) -> str:
    """Deployments are named after the environment they act on: deploy/production."""
    return environment


def render_prefect_yaml(environment: str = "production", unscheduled: frozenset[str] = frozenset()) -> str:
    """Return prefect.yaml for every deployment of `environment`; those in `unscheduled` without a schedule."""
    deployments = []
    for spec in DEPLOYMENTS:
        item = {
            "name": deployment_name(environment),
            "entrypoint": spec.entrypoint,
            "description": spec.description,
            "tags": ["ubertruck", environment, *spec.tags],
            "parameters": {"environment": environment, **spec.parameters},
            "enforce_parameter_schema": True,
            "work_pool": {"name": WORK_POOL, "work_queue_name": spec.queue},
            "schedules": ([{"cron": spec.cron, "timezone": TIMEZONE, "active": True}]
                          if spec.cron and spec.flow not in unscheduled else []),
        }
        if spec.concurrency_limit:
            item["concurrency_limit"] = spec.concurrency_limit
        deployments.append(item)
    header = ("# Generated from ubertruck_ops/deployments/schedules.py by `ubertruck-ops deployments-yaml`;\n"
              "# edit that file, not this one (a test fails when they differ).\n"
              "# Deploy from the project folder: prefect work-pool create ubertruck-ops --type process;\n"
              "# prefect deploy --all\n")
    body = {"name": "ubertruck-ops", "prefect-version": "3.9", "build": None, "push": None, "deployments": deployments}
    return header + yaml.safe_dump(body, sort_keys=False, width=120)


def runner_deployments(environment: str = "production", unscheduled: frozenset[str] = frozenset()) -> list:
    """Return every deployment of `environment` as Prefect runner deployments, for serve(); the
    flows named in `unscheduled` are served without their schedule (run by hand only)."""
    from prefect.schedules import Cron

    from ubertruck_ops.deployments.registry import get_flow

    built = []
    for spec in DEPLOYMENTS:
        built.append(get_flow(spec.flow).to_deployment(
            name=deployment_name(environment), description=spec.description,
            tags=["ubertruck", environment, *spec.tags], parameters={"environment": environment, **spec.parameters},
            schedules=[Cron(spec.cron, timezone=TIMEZONE)] if spec.cron and spec.flow not in unscheduled else None,
            concurrency_limit=spec.concurrency_limit, enforce_parameter_schema=True))
    return built
