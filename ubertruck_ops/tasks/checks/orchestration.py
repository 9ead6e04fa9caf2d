"""Checks against the Prefect API: failed and late flow runs, the backup deployments' schedules;
and the small state checklists keep between runs (Prefect variables, so any worker has it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    FlowRunFilter,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.variables import Variable

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult

BACKUP_FLOWS = ("nightly-backup", "incremental-backup")


def overnight_alerts(environment: str, since: datetime, name: str = "overnight alerts") -> CheckResult:
    """What went wrong in `environment` since `since` (incidents_since): high when anything did."""
    lines = incidents_since(environment, since)
    if lines:
        shown = lines[-30:]             # the newest, when a night had more
        earlier = f" ({len(lines) - len(shown)} earlier not shown)" if len(lines) > len(shown) else ""
        return checks.warn(name, len(lines), "0", f"{len(lines)} since {since:%d %b %H:%M} UTC{earlier}: "
                           + "; ".join(shown), "high")
    return checks.ok(name, 0, "0", f"no incidents and no failed or crashed runs of {environment} since "
                                   f"{since:%d %b %H:%M} UTC")


def incidents_since(environment: str, since: datetime) -> list[str]:
    """The watcher's incidents in `environment` since `since` (from its events, with their durations)
    and the environment's failed or crashed runs (runs whose `environment` or restore
    `target_environment` parameter names it), one line each, saying whether someone was paged."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    from ubertruck_ops.core.alerts import Happened, overnight_lines, pair_watch_events

    def events(prefix: str, names: list[str]):
        wanted = EventFilter(event=EventNameFilter(name=names),
                             resource=EventResourceFilter(id_prefix=[prefix]),
                             occurred=EventOccurredFilter(since=since))
        page = client.read_events(filter=wanted, limit=50)     # the API's page size at most
        found = list(page.events)
        while page.next_page and len(found) < 2000:
            page = client.read_events_page(page.next_page)
            found += page.events
        return found

    with get_client(sync_client=True) as client:
        watch = events(f"ubertruck.watch.{environment}.", ["ubertruck.watch.down", "ubertruck.watch.recovered"])
        reported = events(f"ubertruck.alert.{environment}.", ["ubertruck.alert.flow"])
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED])),
            start_time=FlowRunFilterStartTime(after_=since)), limit=200)
        flows = {f.id: f.name for f in client.read_flows(limit=200)}
    paged_runs = {e.payload.get("flow_run_id") for e in reported if e.payload.get("paged")}
    happened = pair_watch_events([(e.event.rsplit(".", 1)[1], e.resource.get("prefect.resource.name", e.resource.id),
                                   e.occurred, dict(e.payload)) for e in watch])
    for run in runs:
        if environment not in (run.parameters.get("environment"), run.parameters.get("target_environment")):
            continue
        started = run.start_time or run.expected_start_time
        lasted = (run.end_time - started).total_seconds() if run.end_time and started else None
        happened.append(Happened(f"{flows.get(run.flow_id, '?')}/{run.name} {run.state_name}", started, lasted,
                                 str(run.id) in paged_runs))
    happened.sort(key=lambda h: h.started)
    return overnight_lines(happened)


def late_runs() -> CheckResult:
    """Scheduled flow runs that are late (nobody picked them up): high when any."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))), limit=100)
    if runs:
        return checks.warn("scheduled jobs late", len(runs), "0",
                           f"{len(runs)} late run(s): " + ", ".join(r.name for r in runs[:5]) +
                           " - is a worker or `ubertruck-ops serve` running?", "high")
    return checks.ok("scheduled jobs late", 0, "0", "no late runs")


def backup_schedules(environment: str) -> list[CheckResult]:
    """The backup deployments of `environment` exist, are not paused, have an active schedule and a next run."""
    results = []
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows(limit=200)}
        every = client.read_deployments(limit=200)
        for flow_name in BACKUP_FLOWS:
            name = f"schedule {flow_name}"
            # deployments are named after the environment they act on (deployments/schedules.py)
            deployments = [d for d in every if flows.get(d.flow_id) == flow_name and d.name == environment]
            if not deployments:
                results.append(checks.warn(name, "missing", "scheduled",
                                           f"no deployment {flow_name}/{environment}: run `prefect deploy --all` or "
                                           "`ubertruck-ops serve`", "high"))
                continue
            deployment = deployments[0]
            active = [s for s in (deployment.schedules or []) if s.active]
            if deployment.paused or not active:
                results.append(checks.warn(name, "paused", "active", f"{flow_name}/{deployment.name} "
                                           "has no active schedule (paused)", "high"))
                continue
            upcoming = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id={"any_": [deployment.id]}),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
            if not upcoming:
                results.append(checks.warn(name, "no next run", "scheduled",
                                           f"{flow_name}/{deployment.name}: active schedule but no run scheduled",
                                           "high"))
                continue
            when = upcoming[0].expected_start_time
            results.append(checks.ok(name, f"{when:%d %b %H:%M} UTC", "scheduled",
                                     f"{flow_name}/{deployment.name}: next run {when:%Y-%m-%d %H:%M} UTC"))
    return results


def checklist_rows(flow_run_id) -> list[dict]:
    """Return the rows of a checklist run's table artifact (one per check), or [] without one."""
    import json

    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["table"])))
    if not artifacts:
        return []
    data = artifacts[0].data
    return data if isinstance(data, list) else json.loads(data)


def remembered(key: str, environment: str) -> dict:
    """Return what the checklists stored under `key` for `environment` (empty the first time)."""
    value = Variable.get(_name(key, environment), default=None)
    return dict(value) if isinstance(value, dict) else {}


def remember(key: str, environment: str, value: dict) -> None:
    Variable.set(_name(key, environment), value, overwrite=True)


def _name(key: str, environment: str) -> str:
    return f"ubertruck_{environment}_{key}".replace("-", "_")


def since_hours(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)
