"""Small helpers flows use to tell their story."""

from __future__ import annotations

import logging


class Steps:
    """Remembers the step a flow is in, so a failure notice can say where it failed."""

    def __init__(self, log: logging.Logger | logging.LoggerAdapter):
        self.current = "start"
        self.log = log

    def __call__(self, name: str) -> None:
        self.current = name
        self.log.info("step: %s", name)


def compare_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Given the manifest's row counts and a restored database's, return one line per difference."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want != got:
            problems.append(f"{table}: expected {want if want is not None else 'no table'}, "
                            f"restored {got if got is not None else 'no table'}")
    return problems
