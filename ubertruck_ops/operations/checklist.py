"""What every checklist and maintenance run shares: its thresholds and business queries, and what
it does with its results - a table artifact, a markdown report, a Slack summary with critical
items first, and a Failed run when anything is critical."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CRITICAL, CheckResult
from ubertruck_ops.operations.frame import Operation

_ICONS = {checks.CRITICAL: ":red_circle:", checks.ERROR: ":grey_question:", checks.WARN: ":warning:",
          checks.OK: ":white_check_mark:"}
# The UI renders artifacts as plain Markdown: Slack's shortcodes would show as text there.
_MARKS = {checks.CRITICAL: "\U0001F534", checks.ERROR: "\u2754", checks.WARN: "\u26A0\uFE0F", checks.OK: "\u2705"}


class ChecklistCritical(RuntimeError):
    """At least one check is critical: the run ends Failed so the UI and automations flag it."""


def thresholds(env: Environment) -> CheckThresholds:
    """Return the environment's thresholds (load_environment fills in the defaults where none are saved)."""
    return env.thresholds


def business_queries(env: Environment) -> dict[str, str]:
    """Return the environment's business queries by name (the defaults where none are saved)."""
    return env.queries.queries


def slack_summary(title: str, environment: str, results: list[CheckResult], extra: list[str] | None = None) -> dict:
    """Given results, return a Slack payload: counts, then critical, error and warn items, worst first."""
    tally = checks.counts(results)
    verdict = checks.worst(results)
    head = f"{_ICONS[verdict]} [{environment}] {title}: " + ", ".join(f"{n} {s}" for s, n in tally.items() if n)
    lines = [f"{_ICONS[r.status]} *{r.name}*: {r.detail}" for r in checks.ordered(results) if r.status != checks.OK]
    if len(lines) > 25:
        lines = lines[:25] + [f"... and {len(lines) - 25} more in the Prefect artifact"]
    lines += extra or []
    return {"text": head, "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                  "text": "\n".join([f"*{head}*", *lines])[:2900]}}]}


def markdown_report(title: str, results: list[CheckResult], body: str = "") -> str:
    rows = "\n".join(f"| {_MARKS[r.status]} {r.status} | {r.severity or '-'} | {r.name} | {r.to_row()['value']} | "
                     f"{r.to_row()['threshold']} | {r.detail.replace('|', '/')} |" for r in checks.ordered(results))
    tally = ", ".join(f"{n} {s}" for s, n in checks.counts(results).items())
    return f"""# {title}

{tally}

| status | severity | check | value | threshold | detail |
|---|---|---|---|---|---|
{rows}

{body}
"""


def publish(op: Operation, key: str, title: str, results: list[CheckResult], body: str = "",
            extra_slack: list[str] | None = None) -> dict:
    """Publish the artifacts and the Slack summary; raise ChecklistCritical when anything is critical,
    after publishing (a Slack failure never stops the report). Return the counts."""
    create_table_artifact(key=f"{key}-results", table=[r.to_row() for r in checks.ordered(results)],
                          description=f"{title}: every check")
    op.publish(f"{key}-report", title, markdown_report(title, results, body),
               slack_summary(title, op.environment, results, extra_slack))
    critical = [r for r in results if r.status == CRITICAL]
    if critical:
        raise ChecklistCritical(f"{len(critical)} critical: " + "; ".join(f"{r.name}: {r.detail}" for r in critical)[:1500])
    return checks.counts(results)
