"""Sentinel secrets appear nowhere: logs, artifacts, parameters, Slack, manifests, stored
objects, or any process's command line during the run."""

from __future__ import annotations

import json

import psycopg
from pydantic import SecretStr

from ubertruck_ops.blocks.alerting import AlertChannels
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore_drill import restore_drill

from tests.helpers import make_database, s3_repository, save_env
from tests.parts import CommandLineWatcher, PagerDutyReceiver, flow_run_artifacts, flow_run_logs, flow_run_parameters


def _events_text() -> str:
    """Every event of the project in the Prefect API (the Event Feed), as text."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    with get_client(sync_client=True) as client:
        events = client.read_events(filter=EventFilter(event=EventNameFilter(prefix=["ubertruck."])), limit=50).events
    return "\n".join(e.model_dump_json() for e in events)


def test_sentinel_secrets_never_leak_anywhere(pg18, s3_proxy, s3_client, slack, app_tree):
    db_password = "SentinelDbPass7431"
    passphrase = "SentinelPassphrase9925"
    aws_secret = "SentinelAwsSecretKey5510"
    webhook_token = "SentinelWebhookToken/B07/XYZ"
    source = make_database(pg18)
    with psycopg.connect(**source.connect_kwargs(), autocommit=True) as conn:
        conn.execute(f"ALTER ROLE \"{source.user}\" PASSWORD '{db_password}'")
    source = source.model_copy(update={"password": SecretStr(db_password)})
    repo = s3_repository(s3_proxy.url, s3_client, secret_key=aws_secret)
    webhook = slack.webhook(webhook_token)
    env = save_env(source, repo, passphrase=passphrase, slack_url=webhook, app_root=app_tree)
    routing_key, smtp_password = "SentinelRoutingKey4471", "SentinelSmtpPass3307"
    pagerduty = PagerDutyReceiver().start()
    AlertChannels(pagerduty_routing_key=SecretStr(routing_key), pagerduty_events_url=pagerduty.events_url,
                  smtp_url=SecretStr(f"smtp://alerts:{smtp_password}@127.0.0.1:1"), email_from="ops@ubertruck.in",
                  email_to=["oncall@ubertruck.in"]).save(f"{env}-alerts", overwrite=True)
    sentinels = [db_password, passphrase, aws_secret, webhook_token, routing_key, smtp_password]

    with CommandLineWatcher() as watcher:
        backup = nightly_backup(environment=env, return_state=True)
        drill = restore_drill(environment=env, return_state=True)
    pagerduty.stop()
    assert backup.is_completed() and drill.is_completed()
    assert any("gpg" in c for c in watcher.seen) and any("pg_dump" in c for c in watcher.seen), \
        "the watcher must have seen the tools run"

    places = {
        "command lines": "\n".join(watcher.seen),
        "logs": flow_run_logs(backup) + flow_run_logs(drill),
        "artifacts": "\n".join(str(a.data) + str(a.description) for s in (backup, drill) for a in flow_run_artifacts(s)),
        "parameters": str(flow_run_parameters(backup)) + str(flow_run_parameters(drill)),
        "slack": "\n".join(raw.decode() for raw in slack.raw),
        # the routing key is the page's own address: everywhere else in a page it must not be
        "pages": "\n".join(json.dumps({k: v for k, v in json.loads(raw).items() if k != "routing_key"})
                           for raw in pagerduty.raw),
        "events": _events_text(),
    }
    assert pagerduty.actions() == [("resolve", f"ubertruck/{env}/flow/nightly-backup")], pagerduty.actions()
    bucket = repo.s3_bucket.bucket_name
    stored = b""
    for item in s3_client.list_objects_v2(Bucket=bucket)["Contents"]:
        stored += s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    assert len(slack.posts) == 2
    assert places["artifacts"] and places["logs"]
    for sentinel in sentinels:
        for place, text in places.items():
            assert sentinel not in text, f"{sentinel} leaked into {place}"
        assert sentinel.encode() not in stored, f"{sentinel} leaked into the stored objects or manifests"
