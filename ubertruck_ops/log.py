"""One logger for the whole project: Prefect's run logger inside a run, plain logging outside.

Prefect is asked only when this process already imported it: a process that never imported
Prefect runs no flow or task, and `ubertruck-ops wal-push` (PostgreSQL's archive_command, one
process per WAL segment) must not pay the ~1.5 s that importing Prefect costs.
"""

from __future__ import annotations

import logging
import sys


def logger() -> logging.Logger | logging.LoggerAdapter:
    """Return the current flow or task run's logger, or the module logger outside a run."""
    if "prefect" in sys.modules:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    return logging.getLogger("ubertruck_ops")
