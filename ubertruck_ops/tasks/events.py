"""Prefect events: what `watch` saw change, in the server's Event Feed where automations can act on it."""

from __future__ import annotations

import re

from prefect.events import emit_event

from ubertruck_ops.log import logger


def resource_id(environment: str, target: str) -> str:
    return f"ubertruck.watch.{environment}.{re.sub(r'[^a-z0-9]+', '-', target.lower()).strip('-')}"


def emit_watch_event(environment: str, kind: str, target: str, severity: str, detail: str, seconds: float,
                     delivered: dict | None = None) -> bool:
    """Emit `ubertruck.watch.<kind>` (down | reminder | recovered) for `target`, with who heard it
    (`delivered`: sent, failed, paged, silenced_by); return whether it was sent (no API configured:
    not sent, said once in the log)."""
    event = emit_event(f"ubertruck.watch.{kind}",
                       resource={"prefect.resource.id": resource_id(environment, target),
                                 "prefect.resource.name": target, "ubertruck.environment": environment,
                                 "ubertruck.severity": severity},
                       payload={"detail": detail[:2000], "seconds": round(seconds, 1), **(delivered or {})})
    if event is None:
        logger().warning("no Prefect API to send the %s event of %s to", kind, target)
    return event is not None


def emit_flow_alert_event(environment: str, flow: str, severity: str, delivered: dict, flow_run_id: str | None) -> bool:
    """Emit `ubertruck.alert.flow` for a run's failure report: who heard it (paged, sent, silenced_by),
    so the morning checklist can say whether someone was paged. Return whether it was sent."""
    event = emit_event("ubertruck.alert.flow",
                       resource={"prefect.resource.id": f"ubertruck.alert.{environment}.{flow}",
                                 "prefect.resource.name": flow, "ubertruck.environment": environment,
                                 "ubertruck.severity": severity},
                       payload={**delivered, "flow_run_id": flow_run_id or ""})
    return event is not None


def mark_run_reported(suffix: str) -> bool:
    """Append `suffix` to this flow run's name: the server's failure automations skip a run that
    reported its own failure (deployments/automations.py). Return whether it was renamed; never
    raises (outside a run, or with no API, nothing is renamed and the server may speak too)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    try:
        run_id, name = flow_run.id, flow_run.name
        if not run_id or not name or name.endswith(suffix):
            return False
        with get_client(sync_client=True) as client:
            client.update_flow_run(UUID(run_id), name=name + suffix)
        return True
    except Exception as exc:  # noqa: BLE001 - a second notice is better than none
        logger().warning("could not mark this run as reported (%s): the server may report it too", type(exc).__name__)
        return False
