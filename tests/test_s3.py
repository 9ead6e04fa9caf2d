"""The repository on S3 (moto's server over HTTP, behind a proxy that can fail)."""

from __future__ import annotations

from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore

from tests.helpers import make_database, s3_repository, save_env
from tests.parts import table_checksums


def bucket_keys(s3_client, bucket: str) -> list[str]:
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def open_uploads(s3_client, bucket: str) -> list:
    return s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_backup_and_restore_round_trip_on_s3_with_multipart_and_sse(pg18, s3_proxy, s3_client):
    source = make_database(pg18, size_mb=30)  # a dump larger than one 5 MiB part
    repo = s3_repository(s3_proxy.url, s3_client)
    env = save_env(source, repo)
    before = table_checksums(source)

    result = nightly_backup(environment=env)

    bucket = repo.s3_bucket.bucket_name
    keys = bucket_keys(s3_client, bucket)
    assert any(k.endswith("/manifest.json") for k in keys)
    assert all(k.startswith("backups/2") and f"/{result['backup_id']}/" in k for k in keys)
    dump_key = next(k for k in keys if k.endswith("database.dump.zst.gpg"))
    head = s3_client.head_object(Bucket=bucket, Key=dump_key)
    assert head["ServerSideEncryption"] == "AES256"
    parts = [p for m, p in s3_proxy.requests if m == "PUT" and "partNumber=" in p and "database.dump" in p]
    assert len(parts) >= 2, "the dump should have gone up in several multipart parts"
    assert open_uploads(s3_client, bucket) == []

    target = pg18.database(f"{source.database}_from_s3")
    restore(environment=env, target_environment=save_env(target, repo))
    assert table_checksums(target) == before


def test_s3_answering_5xx_for_a_while_is_retried_and_the_backup_succeeds(pg18, source_db, s3_proxy, s3_client):
    repo = s3_repository(s3_proxy.url, s3_client)
    env = save_env(source_db, repo)
    s3_proxy.fail_next(3, "PUT", "partNumber")   # part uploads
    s3_proxy.fail_next(2, "PUT", "manifest.json")

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_completed(), state.message
    failed = [r for r in s3_proxy.requests if r[0] == "PUT"]
    assert len(failed) >= 5
    keys = bucket_keys(s3_client, repo.s3_bucket.bucket_name)
    assert sum(k.endswith("manifest.json") for k in keys) == 1
    assert open_uploads(s3_client, repo.s3_bucket.bucket_name) == []


def test_s3_gone_fails_the_backup_without_manifest_or_orphaned_upload(pg18, source_db, s3_proxy, s3_client, slack):
    repo = s3_repository(s3_proxy.url, s3_client)
    env = save_env(source_db, repo, slack_url=slack.webhook())
    s3_proxy.fail_always("PUT", "partNumber")

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_failed()
    bucket = repo.s3_bucket.bucket_name
    assert not any(k.endswith("manifest.json") for k in bucket_keys(s3_client, bucket))
    assert bucket_keys(s3_client, bucket) == []
    assert open_uploads(s3_client, bucket) == [], "the failed multipart upload must be aborted"
    assert any("FAILED at step 'dump the database'" in t for t in slack.texts())
