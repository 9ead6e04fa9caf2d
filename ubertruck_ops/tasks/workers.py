"""The Prefect API's view of the app hosts' workers: when each host's work queue was last polled,
and running a host's step on its own worker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from ubertruck_ops.core.fleet import WORK_POOL, abandoned_step
from ubertruck_ops.log import logger


def last_polled(pool: str, queues: dict[str, str]) -> dict[str, datetime | None]:
    """Given {host: work queue name} in work pool `pool`, return when a worker last polled each
    queue (None: the queue does not exist or was never polled)."""
    found: dict[str, datetime | None] = {}
    with get_client(sync_client=True) as client:
        for host, queue in queues.items():
            try:
                found[host] = client.read_work_queue_by_name(queue, work_pool_name=pool).last_polled
            except ObjectNotFound:
                found[host] = None
    return found


def run_on_host(deployment: str, queue: str, parameters: dict, timeout: float, label: str,
                pool: str = WORK_POOL, worker_seen_seconds: float | None = None):
    """Run `deployment` (flow/deployment name) with `parameters` on the worker of work queue
    `queue` in work pool `pool` and wait for it (a subflow of the calling run, shown under it in the
    UI) until it is final or `timeout` seconds pass; return (the flow run as last read, why it was given
    up on or None). With `worker_seen_seconds`, a run still waiting for a worker whose worker stopped
    polling (core.fleet.abandoned_step) is given up on at once. The caller judges the state."""
    logger().info("%s: running %s on queue %s", label, deployment, queue)
    run = run_deployment(deployment, parameters=parameters, work_queue_name=queue, timeout=0, flow_run_name=label)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run.id)
            state = run.state
            if (state is not None and state.is_final()) or time.monotonic() >= deadline:
                return run, None
            if worker_seen_seconds is not None:
                try:
                    polled = client.read_work_queue_by_name(queue, work_pool_name=pool).last_polled
                except ObjectNotFound:
                    polled = None
                why = abandoned_step(state.type.value if state else None, polled, datetime.now(UTC),
                                     timedelta(seconds=worker_seen_seconds), label)
                if why:
                    logger().warning("%s", why)
                    return run, why
            time.sleep(1)


def cancel_and_confirm(run_id: UUID, confirm_seconds: float, why: str) -> tuple[str, list[str]]:
    """Cancel flow run `run_id` and read its state until it is final or `confirm_seconds` pass;
    return (its state type then, every state type it went through). A run still waiting for a worker
    (Scheduled) is set Cancelled at once, so no worker picks it up; one a worker took (Pending,
    Running) is set Cancelling, so its worker stops the process."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Cancelling

    log = logger()
    deadline = time.monotonic() + confirm_seconds
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
        if state is not None and not state.is_final():
            ending = Cancelled if state.type == StateType.SCHEDULED else Cancelling
            log.info("cancelling flow run %s (%s): %s", run_id, state.type.value, why)
            client.set_flow_run_state(run_id, ending(message=why), force=True)
        while True:
            state = client.read_flow_run(run_id).state
            if state is None or state.is_final() or time.monotonic() >= deadline:
                break
            time.sleep(1)
        history = [s.type.value for s in client.read_flow_run_states(run_id)]
    found = state.type.value if state is not None else "UNKNOWN"
    log.info("flow run %s is %s (it went through %s)", run_id, found, ", ".join(history))
    return found, history


def latest_switch_run(environment: str, scan: int = 50) -> tuple[tuple[str, str, str] | None, int]:
    """Return `environment`'s newest finished deploy or rollback flow run as (flow run id, flow name,
    final state type), or None when there is none, and how many `go-live` host steps of it started
    (0 for a rollback: only a failed deploy's matter). The newest `scan` runs are read; the rollback
    asking is running, so it is not among them."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    final = [StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED]
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows(flow_filter=FlowFilter(
            name=FlowFilterName(any_=["deploy", "rollback", "host-release"])))}
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy", "rollback"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=final))),
            sort=FlowRunSort.START_TIME_DESC, limit=scan)
        mine = [r for r in runs if r.start_time and (r.parameters or {}).get("environment", "production") == environment]
        if not mine:
            return None, 0
        newest = mine[0]
        started = 0
        if flows.get(newest.flow_id) == "deploy":
            steps = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[newest.id])))
            started = sum(1 for s in steps if flows.get(s.flow_id) == "host-release"
                          and (s.parameters or {}).get("step") == "go-live" and s.start_time is not None)
    return (str(newest.id), flows.get(newest.flow_id, "?"), newest.state_type.value), started
