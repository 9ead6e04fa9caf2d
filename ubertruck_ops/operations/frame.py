"""The frame every operation runs in: its environment, its steps, its clock, its failure notice and
its summary.

A flow opens it once and then tells only its steps:

    with operation("nightly backup", environment) as op:
        op.step("wait for the backup lock")
        ...
        op.publish("nightly-backup-summary", f"nightly backup {backup_id}", markdown, notice)
        return {...}

When the block ends by an exception the frame posts `notices.operation_failed(what, environment,
the step it failed at, the error)` and re-raises. What a failure reports can change as the story
goes on (`on_failure`): a deploy reports nothing while it checks its parameters, says "nothing live
was changed" while it builds, and puts the previous release back once it has switched.
The environment is loaded before the frame can report anything: a missing block is raised as it
is, with no Slack block to post it to.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from prefect.artifacts import create_markdown_artifact

from ubertruck_ops.blocks.environment import Environment, load_environment
from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.core import notices
from ubertruck_ops.core.steps import Steps
from ubertruck_ops.core.text import one_line
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.notify import notify
from ubertruck_ops.tasks.notify import ping as notify_ping
from ubertruck_ops.tasks.repository import Repository, open_repository

FailureHandler = Callable[[Exception], None]


class Operation:
    """One run of an operation: what it is called in notices, its environment's blocks, its steps
    and its clock, and what a failure reports."""

    def __init__(self, what: str, environment: str, env: Environment, notify_failures: bool = True):
        self.what = what                  # as notices name it: "nightly backup", "deploy of v1.2.0"
        self.environment = environment
        self.env = env
        self.log = logger()
        self.step = Steps(self.log)
        self._started = time.monotonic()
        self._repo: Repository | None = None
        self._slack, self._reported_as = env.slack, environment
        self._lines: list[str] = []
        self._handler: FailureHandler | None = None
        self._notify = notify_failures

    @property
    def repo(self) -> Repository:
        """The environment's backup repository, opened on first use."""
        if self._repo is None:
            self._repo = open_repository(self.env.repository)
        return self._repo

    @property
    def elapsed(self) -> float:
        """Seconds since the operation began (or since restart_clock)."""
        return time.monotonic() - self._started

    def restart_clock(self) -> None:
        """Measure the duration from here: e.g. once a lock is held, so waiting for it does not count."""
        self._started = time.monotonic()

    def report_as(self, environment: str, slack: SlackNotices) -> None:
        """Send this run's notices to `environment`'s Slack under its name (a restore reports to its target's)."""
        self._slack, self._reported_as = slack, environment

    def on_failure(self, *lines: str, handler: FailureHandler | None = None, notify: bool = True) -> None:
        """From here on, what a failure reports: the failure notice with `lines` added; or, given
        `handler`, whatever handler(error) does instead (it may raise the error the run ends with);
        or nothing (notify=False: the run's Failed state is the report)."""
        self._lines, self._handler, self._notify = list(lines), handler, notify

    def notify(self, payload: dict) -> None:
        """Post `payload` to the operation's Slack (a failed post is logged, never raised)."""
        notify(self._slack, payload)

    def failure_notice(self, exc: BaseException, lines: list[str] | None = None, at: str | None = None) -> None:
        """Post the operation's failure notice: the step it failed at (or `at`), the error, `lines`."""
        self.notify(notices.operation_failed(self.what, self._reported_as, at or self.step.current, one_line(exc),
                                             self._lines if lines is None else lines))

    def publish(self, key: str, description: str, markdown: str, notice: dict | None = None) -> None:
        """Create the run's summary artifact `key`, then post `notice` when given."""
        create_markdown_artifact(key=key, markdown=markdown, description=description)
        if notice is not None:
            self.notify(notice)

    def _failed(self, exc: Exception) -> None:
        if self._handler is not None:
            self._handler(exc)
        elif self._notify:
            self.failure_notice(exc)


@contextmanager
def operation(what: str, environment: str, notify_failures: bool = True, ping: bool = False) -> Iterator[Operation]:
    """Run an operation of `environment` (named `what` in its notices): load its blocks, then report
    a failure of the block as `Operation.on_failure` last said, and re-raise it (or what the failure
    handler raised instead). Raise what load_environment raises when a block is missing.

    With `ping` (backups, drills, checklists) the environment's dead man's switch hears start,
    success and fail, so a job that never ran is noticed outside Prefect."""
    op = Operation(what, environment, load_environment(environment), notify_failures)
    if ping:
        notify_ping(op.env.slack, "start", what)
    try:
        yield op
    except BaseException as exc:     # a cancellation (TerminationSignal) is a fail too
        if ping:
            notify_ping(op.env.slack, "fail", f"{what}: {one_line(exc)}"[:2000])
        if isinstance(exc, Exception):
            op._failed(exc)
        raise
    if ping:
        notify_ping(op.env.slack, "success", what)
