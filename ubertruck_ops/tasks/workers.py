"""The Prefect API's view of the app hosts' workers: when each host's work queue was last polled,
and running a host's step on its own worker."""

from __future__ import annotations

from datetime import datetime

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
