"""What every checklist and maintenance run shares: its thresholds and business queries, and what
it does with its results - a table artifact, a markdown report and a Slack summary with critical
items first (core/reports.py builds both), and a Failed run when anything is critical."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.artifacts import create_table_artifact

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import alerts, checks
from ubertruck_ops.core.checks import CRITICAL, CheckResult
from ubertruck_ops.core.reports import checklist_report, checklist_slack_summary
from ubertruck_ops.operations.frame import Operation


class ChecklistCritical(RuntimeError):
    """At least one check is critical: the run ends Failed so the UI and automations flag it."""


def thresholds(env: Environment) -> CheckThresholds:
    """Return the environment's thresholds (load_environment fills in the defaults where none are saved)."""
    return env.thresholds


def business_queries(env: Environment) -> dict[str, str]:
    """Return the environment's business queries by name (load_environment fills in the defaults)."""
    return env.queries.queries


def publish(op: Operation, key: str, title: str, results: list[CheckResult], body: str = "",
            extra_slack: list[str] | None = None, incidents: list[str] | None = None) -> dict:
    """Publish the artifacts and the Slack summary (the checklist's one Slack notice), then page for
    each critical finding and email the high ones (the routing table; silences honoured); with
    `incidents` (the evening), send the daily digest of low findings and the day's incidents. Raise
    ChecklistCritical when anything is critical, after publishing (no channel failure stops the
    report). Return the counts."""
    create_table_artifact(key=f"{key}-results", table=[r.to_row() for r in checks.ordered(results)],
                          description=f"{title}: every check")
    op.publish(f"{key}-report", title, checklist_report(title, results, body),
               checklist_slack_summary(title, op.environment, results, extra_slack))
    _route_findings(op, key, results)
    if incidents is not None:
        low = [alerts.DigestItem(r.name, r.detail) for r in results if r.severity == alerts.LOW]
        subject, text = alerts.digest_text(op.environment, f"{datetime.now(UTC):%Y-%m-%d}", low, incidents)
        op.alerter.send_digest(subject, text)
    critical = [r for r in results if r.status == CRITICAL]
    if critical:
        raise ChecklistCritical(f"{len(critical)} critical: " + "; ".join(f"{r.name}: {r.detail}" for r in critical)[:1500])
    return checks.counts(results)


def _route_findings(op: Operation, key: str, results: list[CheckResult]) -> None:
    """Critical findings page (one page per check: its own dedup key), high ones go out in one email;
    Slack already has them in the summary. Never raises."""
    now = datetime.now(UTC)
    already_posted = lambda payload: True  # noqa: E731 - the summary carried them to Slack
    try:
        for result in results:
            if result.status == CRITICAL:
                op.alerter.send(alerts.Alert(op.environment, "checklist", result.name, f"{key}: critical",
                                             alerts.CRITICAL, str(result.value)[:200], now, "", result.detail,
                                             key=alerts.dedup_key(op.environment, "checklist", result.name)),
                                {}, now, post=already_posted)
        high = [r for r in results if r.status != CRITICAL and r.severity == alerts.HIGH]
        if high:
            op.alerter.send(alerts.Alert(op.environment, "checklist", key, f"{len(high)} high finding(s)",
                                         alerts.HIGH, ", ".join(r.name for r in high)[:200], now, "",
                                         "\n".join(f"{r.name}: {r.detail}" for r in high)), {}, now,
                            post=already_posted)
    except Exception as exc:  # noqa: BLE001 - the report stands whatever a channel does
        op.log.warning("the checklist's findings were not routed: %s", exc)
