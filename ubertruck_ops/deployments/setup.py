"""Putting an environment in place: its blocks and the concurrency limits the flows need."""

from __future__ import annotations

import os
from collections.abc import Mapping

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound

from ubertruck_ops.blocks.environment import block_name, load_environment, save_environment
from ubertruck_ops.blocks.variables import environment_from_variables, host_apps_from_variables
from ubertruck_ops.core.alerts import channel_lines
from ubertruck_ops.core.limits import ALL_LOCKS
from ubertruck_ops.core.tiers import Tier

TIER_KEY = "six_hourly_tier"


def ensure_concurrency_limits() -> list[str]:
    """Create the project's global concurrency limits where missing; return their names.

    Flows acquire them with strict=True, which fails loudly if they are missing instead
    of silently running two backups at once.
    """
    with get_client(sync_client=True) as client:
        for name, limit in ALL_LOCKS.items():
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
    return sorted(ALL_LOCKS)


def blocks_init(name: str, env_file: str | None = None, variables: Mapping[str, str] | None = None) -> list[str]:
    """Save environment `name`'s blocks from variables (the process environment, overlaid by
    `env_file` when given) and create the concurrency limits. Return what was saved."""
    values = dict(os.environ if variables is None else variables)
    if env_file:
        from dotenv import dotenv_values

        if not os.path.isfile(env_file):
            raise ValueError(f"env file {env_file} does not exist")
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env = environment_from_variables(values)
    host_apps = host_apps_from_variables(values, env.app, env.fleet.hosts) if env.fleet and env.app else {}
    saved = save_environment(env, name)
    for host, app in host_apps.items():       # deploys on that host read <env>-app-<host> (load_host_app)
        app.save(block_name(name, f"app-{host}"), overwrite=True)
        saved.append(f"{app.get_block_type_slug()}/{block_name(name, f'app-{host}')}")
    queues = ensure_host_queues(env.fleet.hosts) if env.fleet else []
    return saved + [f"global-concurrency-limit/{n}" for n in ensure_concurrency_limits()] + \
        [f"work-queue/{q}" for q in queues]


def alert_channel_lines(name: str) -> list[str]:
    """Which alert channels environment `name` reaches (page, email, Slack) and how to set the others."""
    from ubertruck_ops.blocks.alerting import AlertChannels
    from ubertruck_ops.blocks.environment import block_name
    from ubertruck_ops.blocks.slack import SlackNotices

    slack = SlackNotices.load(block_name(name, "slack"))
    try:
        channels = AlertChannels.load(block_name(name, "alerts"))
    except ValueError:
        channels = AlertChannels()
    return channel_lines(channels.configured() | ({"slack"} if slack.webhook_url else set()))


def ensure_host_queues(hosts: list[str]) -> list[str]:
    """Create the process work pool and one work queue per app host where missing (a worker started
    with --work-queue polls nothing until its queue exists); return the queue names."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from ubertruck_ops.deployments.schedules import WORK_POOL

    names = [f"app-host-{host}" for host in hosts]
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
        except ObjectAlreadyExists:
            pass
        existing = {q.name for q in client.read_work_queues(work_pool_name=WORK_POOL)}
        for queue in names:
            if queue not in existing:
                client.create_work_queue(name=queue, work_pool_name=WORK_POOL)
    return names


def record_tier(name: str) -> str:
    """Choose environment `name`'s six-hourly tier from its blocks and its server, remember it for
    `serve` (which leaves incremental-backup unscheduled when no tier applies) and return the line
    that says it. A server that does not answer yet leaves the tier to the first run."""
    from ubertruck_ops.operations.tiers import read_tier
    from ubertruck_ops.tasks.checks.orchestration import remember
    from ubertruck_ops.tasks.postgres import DatabaseUnreachable

    try:
        tier, _ = read_tier(load_environment(name))
    except DatabaseUnreachable as exc:
        return (f"six-hourly tier: not chosen yet, the database does not answer ({exc}); incremental-backup stays "
                "scheduled and chooses it when it runs (run blocks init again to record it)")
    remember(TIER_KEY, name, tier.as_dict())
    line = f"six-hourly tier: {tier.name} - {tier.why}"
    return line if tier.scheduled else line + " (incremental-backup is served without a schedule)"


def wal_safety(name: str) -> list[str]:
    """Check environment `name`'s replication slot and max_slot_wal_keep_size now (the checks of
    watch and the morning checklist); return one line each, problems in capitals so they stand out.
    Never raises: blocks init has saved the blocks by then, and a server that does not answer yet
    is said, not failed."""
    from ubertruck_ops.core.checks import OK
    from ubertruck_ops.tasks.checks.replication import wal_slot
    from ubertruck_ops.tasks.repository import open_repository

    try:
        env = load_environment(name)
        if env.rds is not None:
            return []           # RDS: no slot of ours, the instance's own PITR
        results = wal_slot(env.database, env.thresholds, name, open_repository(env.repository))
    except Exception as exc:  # noqa: BLE001 - reported, never a failed blocks init
        return [f"WARNING wal slot: not checked ({type(exc).__name__}: {str(exc)[:300]}); `ubertruck-ops watch` and "
                "the morning checklist check it"]
    loud = {"warn": "WARNING", "critical": "CRITICAL", "error": "ERROR"}
    return [f"{r.name}: ok - {r.detail}" if r.status == OK else f"{loud[r.status]} {r.name}: {r.detail}"
            for r in results]


def recorded_tier(name: str) -> Tier | None:
    """Return the tier `blocks init` recorded for environment `name`, or None."""
    from ubertruck_ops.tasks.checks.orchestration import remembered

    value = remembered(TIER_KEY, name)
    return Tier(value["tier"], value["why"], tuple(value["drills"])) if value.get("tier") else None


def unscheduled_by(tier: Tier | None) -> frozenset[str]:
    """The flows served without a schedule under `tier` (the one `blocks init` recorded, None when
    none was): incremental-backup when no six-hourly tier applies."""
    return frozenset() if tier is None or tier.scheduled else frozenset({"incremental-backup"})


def ensure_alerts(name: str) -> list[str]:
    """Create or update environment `name`'s server-side automations (crashed and unreported failed
    runs, missing scheduled runs: Slack, and PagerDuty for critical ones); return what was done."""
    from ubertruck_ops.deployments.automations import ensure_automations

    try:
        env = load_environment(name)
    except ValueError as exc:
        return [f"no automations for {name}: {exc}"]
    url = env.slack.webhook_url.get_secret_value() if env.slack.webhook_url else None
    key = env.alerts.pagerduty_routing_key
    pagerduty = (env.alerts.pagerduty_events_url, key.get_secret_value()) if key is not None else None
    return ensure_automations(name, url, unscheduled_by(recorded_tier(name)), pagerduty=pagerduty)
