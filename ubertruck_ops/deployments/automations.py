"""Alerts that fire from the Prefect server itself, so they work when no worker or `serve` is alive.

From the same table as the schedules (`schedules.DEPLOYMENTS`) and the routing table
(core/alerts.py), through Prefect's `CustomWebhookNotificationBlock`, which posts a JSON body to any
URL (Prefect's `SlackWebhook` hands the URL to Apprise, which refuses every host but Slack's own: a
Mattermost, a proxy or a local receiver heard nothing). Saved per environment:
`<env>-slack-alerts` (Slack's `{"text": ...}` to SLACK_WEBHOOK_URL, the URL kept in the block's
secrets) and, with a PagerDuty routing key, `<env>-pagerduty-alerts` (an Events API v2 trigger whose
dedup_key is core.alerts.flow_dedup_key: the flow's own page and the server's merge, and the next
completed run resolves it).

- `ubertruck-<env>-run-failed` and `ubertruck-<env>-run-failed-critical`: a run of the environment's
  deployments (tags `ubertruck` and `<env>`) that ends Crashed or TimedOut, or Failed without having
  reported itself (a flow that reported its failure renames its run `<name> (reported)`: the flows
  speak for their own failures, so each event is one notice per channel), except `host-release`
  runs (a step whose deploy or rollback reports it). Critical flows (a nightly backup) also page.
- `ubertruck-<env>-<flow>-missing`, one per scheduled flow with `missing_after_hours`: no Completed
  run of `<flow>/<env>` within that many hours (sliding from the last Completed one, and from when
  the automation was created) -> Slack "missing", and a page when the flow's failure is critical.

Created by `blocks init` and `serve`, idempotent: an automation whose definition did not change is
left as it is (an update restarts a "missing" window: updated at every `serve` start, a window
never ended); a changed one is updated in place; one left for a flow that is no longer expected is
deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ubertruck_ops.core import alerts
from ubertruck_ops.deployments.schedules import DEPLOYMENTS, deployment_name

FAILED_STATES = ("Failed", "Crashed", "TimedOut")
REPORTED_SUFFIX = alerts.REPORTED_SUFFIX      # the frame adds it to the name of a run that reported itself


@dataclass(frozen=True)
class MissingRule:
    name: str            # the automation's name
    flow: str
    deployment: str
    within: timedelta


def failure_automation_name(environment: str, critical: bool = False) -> str:
    return f"ubertruck-{environment}-run-failed" + ("-critical" if critical else "")


def missing_rules(environment: str, unscheduled: frozenset[str] = frozenset()) -> list[MissingRule]:
    """The "expected but missing" rules of `environment`: one per scheduled flow of the table with
    missing_after_hours, except those served without a schedule."""
    return [MissingRule(f"ubertruck-{environment}-{spec.flow}-missing", spec.flow, deployment_name(environment),
                        timedelta(hours=spec.missing_after_hours))
            for spec in DEPLOYMENTS
            if spec.cron and spec.missing_after_hours and spec.flow not in unscheduled]


def all_rule_names(environment: str) -> list[str]:
    """Every automation name this module may create for `environment` (whatever the tier)."""
    return [failure_automation_name(environment), failure_automation_name(environment, critical=True)] + \
        [r.name for r in missing_rules(environment)]


def critical_flows() -> list[str]:
    return sorted(f for f in alerts.FLOW_FAILURE_SEVERITY if alerts.flow_failure_severity(f) == alerts.CRITICAL)


def _tags(environment: str) -> list[dict]:
    return [{"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.ubertruck"},
            {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{environment}"}]


def _failure_automation(environment: str, actions: list, critical: bool):
    from prefect.automations import Automation, EventTrigger, Posture

    # A run has exactly one related resource of role "flow": a negated name on it is a true "not".
    if critical:
        flows = [{"prefect.resource.role": "flow", "prefect.resource.name": critical_flows()}]
    else:
        flows = [{"prefect.resource.role": "flow", "prefect.resource.name": f"!{name}"}
                 for name in [*critical_flows(), *sorted(alerts.REPORTED_BY_PARENT)]]
    which = "a critical flow's run (" + ", ".join(critical_flows()) + ")" if critical else "any other run"
    return Automation(
        name=failure_automation_name(environment, critical),
        description=f"{which} of an ubertruck deployment of {environment} that ends Crashed or TimedOut, or Failed "
                    "without having reported itself.",
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{state}" for state in FAILED_STATES},
            match={"prefect.resource.id": "prefect.flow-run.*", "prefect.resource.name": f"!*{REPORTED_SUFFIX}"},
            match_related=_tags(environment) + flows,
            posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=actions)


def _failure_actions(environment: str, slack_id, pagerduty_id) -> list:
    from prefect.automations import SendNotification

    text = (f"[{environment}] {{{{ flow.name }}}}/{{{{ deployment.name }}}} run {{{{ flow_run.name }}}} ended "
            "{{ flow_run.state.name }}\n"
            "message: {{ flow_run.state.message }}\n"
            "run: {{ flow_run|ui_url }}")
    actions = [SendNotification(block_document_id=slack_id, subject="Slack", body=text)]
    if pagerduty_id is not None:
        # the page's dedup_key rides in the subject: core.alerts.flow_dedup_key's form; its summary
        # (PagerDuty takes 1024 characters) holds the start of the state's message
        summary = (f"[{environment}] CRITICAL: {{{{ flow.name }}}}/{{{{ deployment.name }}}} run "
                   "{{ flow_run.name }} ended {{ flow_run.state.name }}: "
                   "{{ (flow_run.state.message or '')[:400] }} - {{ flow_run|ui_url }}")
        actions.append(SendNotification(block_document_id=pagerduty_id,
                                        subject=f"ubertruck/{alerts.slug(environment)}/flow/{{{{ flow.name }}}}",
                                        body=summary))
    return actions


def _missing_automation(environment: str, rule: MissingRule, slack_id, pagerduty_id):
    from prefect.automations import Automation, EventTrigger, Posture, SendNotification

    hours = rule.within.total_seconds() / 3600
    text = (f"[{environment}] {rule.flow}/{rule.deployment} MISSING: no Completed run in the last {hours:g} h "
            f"(is the worker or `serve` running? see the deployment's runs in the UI)")
    actions = [SendNotification(block_document_id=slack_id, subject="Slack", body=text)]
    if pagerduty_id is not None and alerts.flow_failure_severity(rule.flow) == alerts.CRITICAL:
        actions.append(SendNotification(block_document_id=pagerduty_id,
                                        subject=alerts.flow_dedup_key(environment, rule.flow), body=text))
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
        actions=actions)


def _definition(automation) -> dict:
    """What an automation does, without its id or anything the server adds; lists of names sorted
    (a trigger's `expect` is a set: its order changes from one process to the next)."""
    return _sorted_names(automation.model_dump(mode="json", include={"name", "description", "enabled", "trigger",
                                                                     "actions"}, exclude={"trigger": {"id"}}))


def _sorted_names(value):
    if isinstance(value, dict):
        return {key: _sorted_names(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_sorted_names(item) for item in value]
        return sorted(items) if all(isinstance(item, str) for item in items) else items
    return value


def _upsert(automation) -> str:
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=automation.name)
    except ValueError:
        automation.create()
        return "created"
    automation.enabled = existing.enabled            # a silence may have paused it: not ours to undo here
    if _definition(existing) == _definition(automation):
        return "unchanged"                           # an update would restart its window
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


def _notification_blocks(environment: str, webhook_url: str, pagerduty: tuple[str, str] | None):
    """Save `<env>-slack-alerts` and, given (events URL, routing key), `<env>-pagerduty-alerts`; return
    their ids. Every secret (the webhook URL, the routing key) is in the blocks' secrets."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    slack = CustomWebhookNotificationBlock(
        name=f"{environment} Slack", url="{{slack_url}}", json_data={"text": "{{body}}"},
        secrets={"slack_url": webhook_url}, timeout=10)
    slack_id = slack.save(f"{environment}-slack-alerts", overwrite=True)
    # The SlackWebhook block earlier releases saved (Apprise refused most URLs) holds the same secret: gone.
    _delete_block(f"{environment}-slack-webhook", SlackWebhook)
    if pagerduty is None:
        _delete_block(f"{environment}-pagerduty-alerts")
        return slack_id, None
    events_url, routing_key = pagerduty
    page = CustomWebhookNotificationBlock(
        name=f"{environment} PagerDuty", url=events_url, timeout=10, secrets={"routing_key": routing_key},
        json_data={"routing_key": "{{routing_key}}", "event_action": "trigger", "dedup_key": "{{subject}}",
                   "payload": {"summary": "{{body}}", "source": f"ubertruck-ops/{environment}",
                               "severity": "critical", "component": "{{subject}}", "group": environment,
                               "class": "run crashed, failed unreported or missing",
                               "custom_details": {"environment": environment, "target": "{{subject}}",
                                                  "rule": "run crashed, failed unreported or missing",
                                                  "what": "{{body}}"}}})
    return slack_id, page.save(f"{environment}-pagerduty-alerts", overwrite=True)


def _delete_block(name: str, block_class=None) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.exceptions import ObjectNotFound

    try:
        (block_class or CustomWebhookNotificationBlock).delete(name)
    except (ValueError, ObjectNotFound):
        pass


def ensure_automations(environment: str, webhook_url: str | None, unscheduled: frozenset[str] = frozenset(),
                       rules: list[MissingRule] | None = None, pagerduty: tuple[str, str] | None = None) -> list[str]:
    """Save the environment's notification blocks and create or update its automations; return what
    was done, one line each. Without a webhook URL nothing is created (said in the result).
    `rules`: the missing-run rules to apply (default: missing_rules(environment, unscheduled)); any
    other rule of the environment is deleted. `pagerduty`: (events URL, routing key) to page with."""
    if not webhook_url:
        return [f"no automations for {environment}: SLACK_WEBHOOK_URL is not set"]
    slack_id, pagerduty_id = _notification_blocks(environment, webhook_url, pagerduty)
    done = []
    for critical in (False, True):
        actions = _failure_actions(environment, slack_id, pagerduty_id if critical else None)
        automation = _failure_automation(environment, actions, critical)
        done.append(f"automation/{automation.name} {_upsert(automation)}")
    wanted = missing_rules(environment, unscheduled) if rules is None else rules
    for rule in wanted:
        done.append(f"automation/{rule.name} {_upsert(_missing_automation(environment, rule, slack_id, pagerduty_id))}")
    failure_names = {failure_automation_name(environment), failure_automation_name(environment, True)}
    for name in set(all_rule_names(environment)) - failure_names - {r.name for r in wanted}:
        if _delete_if_present(name):
            done.append(f"automation/{name} deleted (its flow is not scheduled)")
    return done
