"""What every checklist and maintenance run shares: its thresholds and business queries, and what
it does with its results - a table artifact, a markdown report and a Slack summary with critical
items first (core/reports.py builds both), and a Failed run when anything is critical."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
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
            extra_slack: list[str] | None = None) -> dict:
    """Publish the artifacts and the Slack summary; raise ChecklistCritical when anything is critical,
    after publishing (a Slack failure never stops the report). Return the counts."""
    create_table_artifact(key=f"{key}-results", table=[r.to_row() for r in checks.ordered(results)],
                          description=f"{title}: every check")
    op.publish(f"{key}-report", title, checklist_report(title, results, body),
               checklist_slack_summary(title, op.environment, results, extra_slack))
    critical = [r for r in results if r.status == CRITICAL]
    if critical:
        raise ChecklistCritical(f"{len(critical)} critical: " + "; ".join(f"{r.name}: {r.detail}" for r in critical)[:1500])
    return checks.counts(results)
