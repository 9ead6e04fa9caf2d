"""The Prefect API's view of the app hosts' workers: when each host's work queue was last polled,
and running a host's step on its own worker."""

from __future__ import annotations

import time
from datetime import datetime
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

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


def run_on_host(deployment: str, queue: str, parameters: dict, timeout: float, label: str):
    """Run `deployment` (flow/deployment name) with `parameters` on the worker of work queue
    `queue` and wait for it (a subflow of the calling run, shown under it in the UI); return the
    finished flow run. The caller judges its state."""
    logger().info("%s: running %s on queue %s", label, deployment, queue)
    return run_deployment(deployment, parameters=parameters, work_queue_name=queue, timeout=timeout, poll_interval=1,
                          flow_run_name=label)


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
