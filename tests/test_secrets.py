"""Sentinel secrets appear nowhere: logs, artifacts, parameters, Slack, manifests, stored
objects, or any process's command line during the run."""

from __future__ import annotations

import psycopg
from pydantic import SecretStr

from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore_drill import restore_drill

from tests.helpers import make_database, s3_repository, save_env
from tests.parts import CommandLineWatcher, flow_run_artifacts, flow_run_logs, flow_run_parameters


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
    sentinels = [db_password, passphrase, aws_secret, webhook_token]

    with CommandLineWatcher() as watcher:
        backup = nightly_backup(environment=env, return_state=True)
        drill = restore_drill(environment=env, return_state=True)
    assert backup.is_completed() and drill.is_completed()
    assert any("gpg" in c for c in watcher.seen) and any("pg_dump" in c for c in watcher.seen), \
        "the watcher must have seen the tools run"

    places = {
        "command lines": "\n".join(watcher.seen),
        "logs": flow_run_logs(backup) + flow_run_logs(drill),
        "artifacts": "\n".join(str(a.data) + str(a.description) for s in (backup, drill) for a in flow_run_artifacts(s)),
        "parameters": str(flow_run_parameters(backup)) + str(flow_run_parameters(drill)),
        "slack": "\n".join(raw.decode() for raw in slack.raw),
    }
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
