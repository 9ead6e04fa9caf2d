"""Pausing the server's automations while a silence covers them (core/alerts.py decides what a
silence covers; operations/silences.py and operations/alerts.py call this when one starts and ends).

By name, as deployments/automations.py names them: every `ubertruck-<env>-...` automation for a
silence of the whole environment; `ubertruck-<env>-<flow>-missing` for a silence of one flow (the
failure automations cover many flows at once and stay on for a one-flow silence)."""

from __future__ import annotations

from ubertruck_ops.core.alerts import Silence
from ubertruck_ops.log import logger


def covered_names(environment: str, target: str | None, names: list[str]) -> list[str]:
    """Which of `names` (the server's automations) a silence of `target` in `environment` pauses."""
    if target is None:
        return [n for n in names if n.startswith(f"ubertruck-{environment}-")]
    return [n for n in names if n == f"ubertruck-{environment}-{target}-missing"]


def set_paused(environment: str, ended_or_made: Silence, paused: bool, still_active: list[Silence]) -> list[str]:
    """Pause (`paused`) the automations `ended_or_made` covers, or resume those no other active silence
    still covers. Return the names changed. Never raises: with no server answering, the silence still
    quiets every other source (said in the log)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            existing = {a.name: a for a in client.read_automations()}
            names = covered_names(environment, ended_or_made.target, sorted(existing))
            if not paused:
                held = {n for s in still_active for n in covered_names(environment, s.target, names)}
                names = [n for n in names if n not in held]
            changed = []
            for name in names:
                automation = existing[name]
                if automation.enabled == paused:          # enabled and pausing, or paused and resuming
                    (client.pause_automation if paused else client.resume_automation)(automation.id)
                    changed.append(name)
        return changed
    except Exception as exc:  # noqa: BLE001 - the silence stands for every other source
        logger().warning("could not %s the server's automations of %s: %s", "pause" if paused else "resume",
                         environment, type(exc).__name__)
        return []
