"""The operation frame's failure reports: scoped, innermost first, nothing twice (operations/frame.py)."""

from __future__ import annotations

import json

import pytest

from ubertruck_ops.blocks.variables import environment_from_variables
from ubertruck_ops.operations.frame import Operation

VARIABLES = {"DATABASE_URL": "postgresql://u:p@db.example:5432/ubertruck", "BACKUP_ENCRYPTION_KEY": "k",
             "BACKUP_REPOSITORY": "/var/backups/ubertruck"}


class Recorded(Operation):
    """An operation whose notices are kept instead of posted."""

    def __init__(self, notify_failures: bool = False):
        super().__init__("deploy of v1.2.0", "production", environment_from_variables(VARIABLES), notify_failures)
        self.posted: list[str] = []

    def notify(self, payload: dict) -> None:
        self.posted.append(json.dumps(payload))


def fail_inside(op: Operation, *blocks, error: Exception | None = None) -> Exception:
    """Raise `error` inside the nested failure_says blocks given as (lines, handler) pairs; let the
    frame report it as `operation()` does; return the error."""
    error = error or RuntimeError("npm ci failed")

    def enter(level: int):
        if level == len(blocks):
            raise error
        lines, handler = blocks[level]
        with op.failure_says(*lines, handler=handler):
            enter(level + 1)

    with pytest.raises(type(error)):
        try:
            enter(0)
        except Exception as exc:
            op._failed(exc)
            raise
    return error


def test_a_failure_outside_every_block_posts_nothing_unless_the_operation_asks_for_notices():
    quiet = Recorded()
    fail_inside(quiet)
    assert quiet.posted == []
    loud = Recorded(notify_failures=True)
    fail_inside(loud)
    assert len(loud.posted) == 1 and "npm ci failed" in loud.posted[0]


def test_the_innermost_block_an_error_leaves_speaks_for_it():
    op = Recorded()
    fail_inside(op, (["nothing live was changed"], None), (["the migrate step may have run"], None))
    assert len(op.posted) == 1
    assert "the migrate step may have run" in op.posted[0] and "nothing live was changed" not in op.posted[0]


def test_a_handler_replaces_the_notice_and_a_block_that_ended_well_says_nothing_later():
    op = Recorded()
    handled: list[str] = []
    with op.failure_says("nothing live was changed"):
        pass                                    # this block ended without an error
    fail_inside(op, ([], lambda exc: handled.append(str(exc))))
    assert handled == ["npm ci failed"] and op.posted == []


def test_an_error_raised_while_handling_a_reported_one_keeps_the_inner_report():
    op = Recorded()
    inner = RuntimeError("disk full")
    with pytest.raises(ValueError):
        try:
            with op.failure_says("outer"):
                try:
                    with op.failure_says("the backup was removed"):
                        raise inner
                except RuntimeError as exc:
                    raise ValueError("repository full") from exc
        except Exception as exc:
            op._failed(exc)
            raise
    assert len(op.posted) == 1 and "the backup was removed" in op.posted[0] and "outer" not in op.posted[0]


def test_a_failure_already_reported_is_not_posted_again_by_an_enclosing_block():
    op = Recorded()
    error = RuntimeError("web-2 failed its health gate")
    with pytest.raises(RuntimeError):
        try:
            with op.failure_says():
                try:
                    raise error
                except RuntimeError:
                    op.notify({"text": "rolling deploy FAILED: web-1 put back"})
                    op.already_reported(error)
                    raise
        except Exception as exc:
            op._failed(exc)
            raise
    assert op.posted == [json.dumps({"text": "rolling deploy FAILED: web-1 put back"})]
