"""Alerts that fire from the Prefect server itself, so they work when no worker or `serve` is alive.

From the same table as the schedules (`schedules.DEPLOYMENTS`), with Prefect's own Slack block
(`SlackWebhook`, saved as `<env>-slack-webhook` from the environment's SLACK_WEBHOOK_URL):
- `ubertruck-<env>-run-failed`: any run of the environment's deployments (tags `ubertruck` and
  `<env>`) that ends Failed, Crashed or TimedOut -> Slack with the flow, the deployment, the state
  message and a link to the run in the UI;
- `ubertruck-<env>-<flow>-missing`, one per scheduled flow with `missing_after_hours`: no Completed
  run of `<flow>/<env>` within that many hours (sliding from the last Completed one, and from when
  the automation was created) -> Slack "missing".

Created by `blocks init` and `serve`, idempotent: an automation of the same name is updated in
place, one left for a flow that is no longer expected (a tier without six-hourly backups) is
deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ubertruck_ops.deployments.schedules import DEPLOYMENTS, deployment_name

FAILED_STATES = ("Failed", "Crashed", "TimedOut")


@dataclass(frozen=True)
class MissingRule:
    name: str            # the automation's name
    flow: str
    deployment: str
    within: timedelta


def failure_automation_name(environment: str) -> str:
    return f"ubertruck-{environment}-run-failed"


def missing_rules(environment: str, unscheduled: frozenset[str] = frozenset()) -> list[MissingRule]:
    """The "expected but missing" rules of `environment`: one per scheduled flow of the table with
    missing_after_hours, except those served without a schedule."""
    return [MissingRule(f"ubertruck-{environment}-{spec.flow}-missing", spec.flow, deployment_name(environment),
                        timedelta(hours=spec.missing_after_hours))
            for spec in DEPLOYMENTS
            if spec.cron and spec.missing_after_hours and spec.flow not in unscheduled]


def all_rule_names(environment: str) -> list[str]:
    """Every automation name this module may create for `environment` (whatever the tier)."""
    return [failure_automation_name(environment)] + [r.name for r in missing_rules(environment)]


def _failure_automation(environment: str, block_id):
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    return Automation(
        name=failure_automation_name(environment),
        description=f"Any run of an ubertruck deployment of {environment} that ends Failed, Crashed or TimedOut.",
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{state}" for state in FAILED_STATES},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=[{"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.ubertruck"},
                           {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{environment}"}],
            posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[SendNotification(
            block_document_id=block_id,
            subject=f"[{environment}] {{{{ flow.name }}}}/{{{{ deployment.name }}}}: run {{{{ flow_run.name }}}} "
                    f"{{{{ flow_run.state.name }}}}",
            body=(f"[{environment}] {{{{ flow.name }}}}/{{{{ deployment.name }}}} run {{{{ flow_run.name }}}} ended "
                  "{{ flow_run.state.name }}\n"
                  "message: {{ flow_run.state.message }}\n"
                  "run: {{ flow_run|ui_url }}"))])


def _missing_automation(environment: str, rule: MissingRule, block_id):
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    hours = rule.within.total_seconds() / 3600
    text = (f"[{environment}] {rule.flow}/{rule.deployment} MISSING: no Completed run in the last {hours:g} h "
            f"(is the worker or `serve` running? see the deployment's runs in the UI)")
    return Automation(
        name=rule.name,
        description=f"No Completed run of {rule.flow}/{rule.deployment} within {hours:g} h.",
        trigger=EventTrigger(
            # the same event opens and closes the window: it slides from the last Completed run
            after={"prefect.flow-run.Completed"}, expect={"prefect.flow-run.Completed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=[{"prefect.resource.role": "flow", "prefect.resource.name": rule.flow},
                           {"prefect.resource.role": "deployment", "prefect.resource.name": rule.deployment}],
            posture=Posture.Proactive, threshold=1, within=rule.within),
        actions=[SendNotification(block_document_id=block_id, subject=text, body=text)])


def _upsert(automation) -> str:
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=automation.name)
    except ValueError:
        automation.create()
        return "created"
    automation.id = existing.id
    automation.update()
    return "updated"


def _delete_if_present(name: str) -> bool:
    from prefect.automations import Automation

    try:
        Automation.read(name=name).delete()
        return True
    except ValueError:
        return False


def ensure_automations(environment: str, webhook_url: str | None, unscheduled: frozenset[str] = frozenset(),
                       rules: list[MissingRule] | None = None) -> list[str]:
    """Save `<env>-slack-webhook` and create or update the environment's automations; return what
    was done, one line each. Without a webhook URL nothing is created (said in the result).
    `rules`: the missing-run rules to apply (default: missing_rules(environment, unscheduled)); any
    other rule of the environment is deleted."""
    from prefect.blocks.notifications import SlackWebhook
    from pydantic import SecretStr

    if not webhook_url:
        return [f"no automations for {environment}: SLACK_WEBHOOK_URL is not set"]
    block_id = SlackWebhook(url=SecretStr(webhook_url)).save(f"{environment}-slack-webhook", overwrite=True)
    done = [f"automation/{failure_automation_name(environment)} "
            f"{_upsert(_failure_automation(environment, block_id))}"]
    wanted = missing_rules(environment, unscheduled) if rules is None else rules
    for rule in wanted:
        done.append(f"automation/{rule.name} {_upsert(_missing_automation(environment, rule, block_id))}")
    for name in set(all_rule_names(environment)) - {failure_automation_name(environment)} - {r.name for r in wanted}:
        if _delete_if_present(name):
            done.append(f"automation/{name} deleted (its flow is not scheduled)")
    return done
