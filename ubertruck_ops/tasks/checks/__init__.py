"""Checks of the daily checklists and the maintenance flows, one outside system per module,
and the runner that gives each its own deadline."""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable

from ubertruck_ops.core.checks import CheckResult, error, timed_out
from ubertruck_ops.core.text import one_line

Check = Callable[[], "CheckResult | list[CheckResult]"]


def run_checks(checks: dict[str, Check], timeout: float, timeouts: dict[str, float] | None = None) -> list[CheckResult]:
    """Run every check at once, each in a daemon thread with its own deadline; return all results.

    A check that raises is `error` (it could not measure); one that is still running at its
    deadline is `critical` ("no answer within N s"), and is left behind: a hung socket cannot
    hold the checklist. The whole run takes at most the longest deadline.
    """
    answers: queue.Queue = queue.Queue()
    started = time.monotonic()

    def work(name: str, check: Check) -> None:
        clock = time.monotonic()
        try:
            outcome = check()
        except Exception as exc:  # noqa: BLE001 - a check that cannot measure says so, it never passes
            outcome = error(name, one_line(exc))
        spent = time.monotonic() - clock
        results = outcome if isinstance(outcome, list) else [outcome]
        if not results or not all(isinstance(r, CheckResult) for r in results):
            results = [error(name, "the check returned no result")]
        for result in results:
            result.seconds = spent
        answers.put((name, results))

    deadlines = {name: started + (timeouts or {}).get(name, timeout) for name in checks}
    for name, check in checks.items():
        # Each thread in a copy of this context: the run's Prefect settings (its API, its auth) live in
        # context variables, and a check that reads the API from a bare thread would start another one.
        threading.Thread(target=contextvars.copy_context().run, args=(work, name, check), name=f"check {name}",
                         daemon=True).start()
    collected: dict[str, list[CheckResult]] = {}
    while len(collected) < len(checks):
        pending = [n for n in checks if n not in collected]
        wait = min(deadlines[n] for n in pending) - time.monotonic()
        if wait <= 0:
            for name in pending:
                if deadlines[name] <= time.monotonic():
                    limit = deadlines[name] - started
                    collected[name] = [timed_out(name, limit)]
            continue
        try:
            name, results = answers.get(timeout=wait)
        except queue.Empty:
            continue
        if name not in collected:
            collected[name] = results
    return [result for name in checks for result in collected[name]]
