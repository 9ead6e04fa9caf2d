"""One logger for the whole project: Prefect's run logger inside a run, plain logging outside."""

from __future__ import annotations

import logging

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger


def logger() -> logging.Logger | logging.LoggerAdapter:
    """Return the current flow or task run's logger, or the module logger outside a run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("ubertruck_ops")
