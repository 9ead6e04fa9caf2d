"""Run another operation's flow as a real subflow, by its Prefect name, without importing its module.

Flows do not import flows: the house's arrows point down, and a flow module imported by another
drags in its imports and makes cycles easy. A flow that needs another as a subflow (deploy backs
the database up before migrating, the monthly maintenance runs the restore drill) names it, and
Prefect's own flow lookup (`load_flow_from_entrypoint`, given a module path: an ordinary import,
so the subflow is the very object `deployments/registry.py` serves) finds it when it is called.
tests/test_subflows.py checks that every name here is the flow the registry serves under it.
"""

from __future__ import annotations

from prefect import Flow
from prefect.flows import load_flow_from_entrypoint

# The flows other flows run, by Prefect flow name: module path and function.
SUBFLOWS = {
    "nightly-backup": "ubertruck_ops.flows.nightly_backup.nightly_backup",
    "restore-drill": "ubertruck_ops.flows.restore_drill.restore_drill",
}


def subflow(name: str) -> Flow:
    """Return the flow called `name` (e.g. "nightly-backup") to call as a subflow.
    Raise ValueError for a flow no flow may call."""
    if name not in SUBFLOWS:
        raise ValueError(f"{name!r} is not a subflow; known: {', '.join(sorted(SUBFLOWS))}")
    return load_flow_from_entrypoint(SUBFLOWS[name], use_placeholder_flow=False)
