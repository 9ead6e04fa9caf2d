"""What Prefect recorded about the current flow run's start: who or what created it."""

from __future__ import annotations

from prefect.runtime import flow_run

from ubertruck_ops.log import logger


def started_by() -> tuple[str | None, str | None, bool]:
    """Return (created_by type, its name, auto_scheduled) of the current flow run; (None, None, False)
    outside a run or when the API cannot say."""
    run_id = flow_run.get_id()
    if not run_id:
        return None, None, False
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
    except Exception as exc:  # noqa: BLE001 - who asked is information; the deploy goes on without it
        logger().warning("could not read who started this run: %s", exc)
        return None, None, False
    created = run.created_by
    return (str(created.type) if created and created.type else None,
            created.display_value if created else None, bool(run.auto_scheduled))
