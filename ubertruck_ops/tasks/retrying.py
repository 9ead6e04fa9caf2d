"""Prefect task retries: the settings every network task shares, and `retry_when`, which turns a
rule "this error is transient" into a task's retry_condition_fn. Prefect then shows every attempt
in the UI (AwaitingRetry, Retrying); an error the rule calls lasting fails at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Two more attempts, 2 s then 10 s later (+-50%): enough for a dropped connection or a busy
# registry, short enough that a real outage is reported within a quarter of a minute.
RETRIES = 2
RETRY_DELAYS = [2, 10]
RETRY_JITTER = 0.5


def failure_of(state: Any) -> BaseException | None:
    """Return the exception a failed task run's state holds, or None."""
    data = getattr(state, "data", None)
    if isinstance(data, BaseException):
        return data
    try:
        result = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - a state without a readable result holds no exception we can judge
        return None
    return result if isinstance(result, BaseException) else None


def retry_when(is_transient: Callable[[BaseException], bool]) -> Callable[[Any, Any, Any], bool]:
    """Return a retry_condition_fn that retries a failed task run only when `is_transient` says
    its exception is."""
    def condition(task: Any, task_run: Any, state: Any) -> bool:
        exc = failure_of(state)
        return exc is not None and bool(is_transient(exc))

    condition.__name__ = f"retry_when_{getattr(is_transient, '__name__', 'transient')}"
    return condition


def network_retries(is_transient: Callable[[BaseException], bool]) -> dict:
    """Return the @task keyword arguments of an idempotent task that touches the network."""
    return {"retries": RETRIES, "retry_delay_seconds": RETRY_DELAYS, "retry_jitter_factor": RETRY_JITTER,
            "retry_condition_fn": retry_when(is_transient)}
