"""The frame every operation runs in: its environment, its steps, its clock, its failure notice and
its summary.

A flow opens it once and then tells only its steps:

    with operation("nightly backup", environment) as op:
        op.step("wait for the backup lock")
        ...
        op.publish("nightly-backup-summary", f"nightly backup {backup_id}", markdown, notice)
        return {...}

A failure re-raises; what it reports is scoped, so the story reads top to bottom: outside any
`with op.failure_says(...)` block a failure is the run's own (its Failed state says it; e.g. bad
parameters), inside one the frame posts `notices.operation_failed(what, environment, the step it
failed at, the error, lines)`, or calls the block's handler instead (a deploy puts the previous
release back once it has switched). Blocks nest; the innermost one the error passed through
speaks. `operation(..., notify_failures=True)` makes the whole operation one such block.
The environment is loaded before the frame can report anything: a missing block is raised as it
is, with no Slack block to post it to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from ubertruck_ops.blocks.environment import Environment, load_environment
from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.core import alerts, notices
from ubertruck_ops.core.alerts import REPORTED_SUFFIX
from ubertruck_ops.core.steps import Steps
from ubertruck_ops.core.text import one_line
from ubertruck_ops.log import logger
from ubertruck_ops.operations.alerts import Alerter
from ubertruck_ops.tasks.events import emit_flow_alert_event, mark_run_reported
from ubertruck_ops.tasks.notify import notify
from ubertruck_ops.tasks.notify import ping as notify_ping
from ubertruck_ops.tasks.repository import Repository, open_repository

FailureHandler = Callable[[Exception], None]


@dataclass(frozen=True)
class FailureReport:
    """What a failure inside one `failure_says` block reports: the notice's extra lines, or a handler."""

    lines: list[str] = field(default_factory=list)
    handler: FailureHandler | None = None


class Operation:
    """One run of an operation: what it is called in notices, its environment's blocks, its steps
    and its clock, and what a failure reports."""

    def __init__(self, what: str, environment: str, env: Environment, notify_failures: bool = False):
        self.what = what                  # as notices name it: "nightly backup", "deploy of v1.2.0"
        self.environment = environment
        self.env = env
        self.log = logger()
        self.step = Steps(self.log)
        self._started = time.monotonic()
        self._repo: Repository | None = None
        self._slack, self._reported_as = env.slack, environment
        self.flow = flow_run.flow_name or None     # None outside a flow run (tests): named by `what`
        self._default = FailureReport() if notify_failures else None
        # The report of the innermost failure_says block the failing error passed through.
        self._failing: tuple[BaseException, FailureReport] | None = None

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

    @contextmanager
    def failure_says(self, *lines: str, handler: FailureHandler | None = None) -> Iterator[None]:
        """Inside the block, a failure posts the operation's failure notice with `lines` added; or,
        given `handler`, calls handler(error) instead (it may raise the error the run ends with).
        The innermost block an error leaves speaks for it."""
        try:
            yield
        except Exception as exc:
            if self._failing is None or not _caused_by(exc, self._failing[0]):
                self._failing = (exc, FailureReport(list(lines), handler))
            raise

    def already_reported(self, exc: BaseException) -> None:
        """`exc` has had its notice (a roll posts what it put back on each host): no block posts another."""
        self._failing = (exc, FailureReport(handler=_report_nothing))

    def notify(self, payload: dict) -> bool:
        """Post `payload` to the operation's Slack; return whether Slack took it (a failed post is
        logged, never raised)."""
        return notify(self._slack, payload)

    @property
    def alerter(self) -> Alerter:
        """The alert channels this run reports to (its environment's, or a restore's target's Slack)."""
        return Alerter(self._reported_as, self._slack, self.env.alerts)

    def failure_alert(self, payload: dict, error: BaseException | str) -> None:
        """Report this run's failure where its flow's failure severity goes (core/alerts.py: a failed
        nightly backup pages), with `payload` as its Slack notice. Never raises."""
        target = self.flow or self.what
        alert = alerts.Alert(self._reported_as, "flow", target, "run failed",
                             alerts.flow_failure_severity(target), one_line(error)[:200], datetime.now(UTC),
                             flow_run.ui_url or "",
                             f"{self.what} failed at step '{self.step.current}': {one_line(error)}",
                             key=alerts.flow_dedup_key(self._reported_as, target))
        try:
            delivery = self.alerter.send(alert, payload, post=self.notify)
            emit_flow_alert_event(self._reported_as, target, alert.severity,
                                  {"sent": delivery.sent, "failed": delivery.failed, "paged": delivery.paged,
                                   "silenced_by": delivery.silenced_by}, flow_run.id)
            if not delivery.failed:     # every channel took it: the server's automations need not repeat it
                mark_run_reported(REPORTED_SUFFIX)
        except Exception as exc:  # noqa: BLE001 - a report must never change the run's outcome
            self.log.warning("the failure alert was not sent: %s", one_line(exc))

    def failure_notice(self, exc: BaseException, lines: list[str] | None = None, at: str | None = None) -> None:
        """Report the operation's failure (failure_alert): the step it failed at (or `at`), the error, `lines`."""
        self.failure_alert(notices.operation_failed(self.what, self._reported_as, at or self.step.current,
                                                    one_line(exc), lines or []), exc)

    def publish(self, key: str, description: str, markdown: str, notice: dict | None = None) -> None:
        """Create the run's summary artifact `key`, then post `notice` when given."""
        create_markdown_artifact(key=key, markdown=markdown, description=description)
        if notice is not None:
            self.notify(notice)

    def _failed(self, exc: Exception) -> None:
        report = self._failing[1] if self._failing and _caused_by(exc, self._failing[0]) else self._default
        if report is None:
            return
        if report.handler is not None:
            report.handler(exc)
        else:
            self.failure_notice(exc, report.lines)


def _report_nothing(exc: Exception) -> None:
    """The handler of a failure that has already been reported."""


def _caused_by(exc: BaseException, origin: BaseException) -> bool:
    """True when `exc` is `origin` or was raised while handling it (its cause or context chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if exc is origin:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextmanager
def operation(what: str, environment: str, notify_failures: bool = False, ping: bool = False) -> Iterator[Operation]:
    """Run an operation of `environment` (named `what` in its notices): load its blocks, then report
    a failure of the block as its innermost `failure_says` block says (with `notify_failures`, a
    failure outside any block posts the plain failure notice), and re-raise it (or what the failure
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
    if op.flow:
        try:
            op.alerter.resolve_flow(op.flow)      # a page a failed run opened closes when a run completes
        except Exception as exc:  # noqa: BLE001 - never fails a run that completed
            op.log.warning("the page of %s was not resolved: %s", op.flow, one_line(exc))
