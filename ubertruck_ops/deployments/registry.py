"""Every flow by its Prefect name (the names operators, CI and `ubertruck-ops run` use)."""

from __future__ import annotations

from prefect import Flow

from ubertruck_ops.flows.checklists import afternoon_checklist, evening_checklist, morning_checklist
from ubertruck_ops.flows.deploy import deploy
from ubertruck_ops.flows.host_release import host_release
from ubertruck_ops.flows.incremental_backup import incremental_backup
from ubertruck_ops.flows.maintenance import monthly_maintenance, weekly_maintenance
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.reconfigure import reconfigure
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill
from ubertruck_ops.flows.rollback import rollback

FLOWS: dict[str, Flow] = {f.name: f for f in (nightly_backup, incremental_backup, restore, restore_drill, deploy, rollback, reconfigure,
                                         morning_checklist, afternoon_checklist, evening_checklist,
                                         weekly_maintenance, monthly_maintenance, host_release)}


def get_flow(name: str) -> Flow:
    """Return the flow called `name`. Raise ValueError listing the known names."""
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}; known flows: {', '.join(sorted(FLOWS))}")
    return FLOWS[name]
