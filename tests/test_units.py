"""Pure logic, without Prefect or servers: retention, manifests, command builders, payloads, parsing."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import SecretStr

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.environment import environment_from_variables
from ubertruck_ops.core import notices
from ubertruck_ops.core.manifest import (Manifest, StoredObject, backup_folder, backup_id_of_key, new_backup_id,
                                         validate_backup_id)
from ubertruck_ops.core.retention import BackupRecord, backups_to_delete, stale_incomplete
from ubertruck_ops.core.steps import compare_counts
from ubertruck_ops.deployments.cli import parse_params
from ubertruck_ops.tasks import postgres
from ubertruck_ops.tasks.crypto import GpgSession, explain_decrypt_failure
from ubertruck_ops.tasks.execute import display, mask

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def full(day: int) -> BackupRecord:
    return BackupRecord(f"full-{day}", NOW - timedelta(days=day))


def test_retention_deletes_full_backups_older_than_the_window():
    backups = [full(d) for d in (1, 10, 29, 31, 45)]
    assert backups_to_delete(backups, NOW, keep_full_days=30) == {"full-31", "full-45"}


def test_retention_never_deletes_the_newest_complete_full_backup_even_when_expired():
    assert backups_to_delete([full(40), full(50)], NOW, keep_full_days=30) == {"full-50"}


def test_retention_keeps_the_parents_of_kept_incrementals():
    base = full(40)
    inc1 = BackupRecord("inc-1", NOW - timedelta(days=5), parent="full-40")
    inc2 = BackupRecord("inc-2", NOW - timedelta(days=1), parent="inc-1")
    newer = full(2)
    assert backups_to_delete([base, inc1, inc2, newer], NOW, keep_full_days=30) == set()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 90), st.booleans()), min_size=1, max_size=25), st.integers(1, 60))
def test_retention_never_leaves_a_kept_backup_without_its_parents_nor_zero_fulls(spec, keep_days):
    records = []
    for index, (age, incremental) in enumerate(sorted(spec, key=lambda s: -s[0])):
        parent = records[-1].backup_id if incremental and records else None
        records.append(BackupRecord(f"b{index}", NOW - timedelta(days=age), parent))
    deleted = backups_to_delete(records, NOW, keep_days)
    kept = {r.backup_id: r for r in records if r.backup_id not in deleted}
    assert any(r.is_full for r in kept.values())
    for record in kept.values():
        assert record.parent is None or record.parent in kept


def test_incomplete_leftovers_go_only_after_the_grace_period():
    folders = {"a": NOW - timedelta(hours=30), "b": NOW - timedelta(hours=2), "c": NOW - timedelta(days=9)}
    assert stale_incomplete(folders, {"c"}, NOW, timedelta(hours=24)) == ["a"]


def test_backup_ids_map_to_the_guides_date_folders_and_refuse_path_tricks():
    backup_id = new_backup_id(NOW, "logical", "a1b2c3d4")
    assert backup_id == "20261124T020000Z-logical-a1b2c3"
    assert backup_folder(backup_id) == "2026/11/24/20261124T020000Z-logical-a1b2c3"
    assert backup_id_of_key(f"2026/11/24/{backup_id}/manifest.json") == backup_id
    assert backup_id_of_key(f"2026/11/25/{backup_id}/manifest.json") is None
    for bad in ("../../etc/passwd", "", "20261124T020000Z-logical-a1b2c3/.."):
        with pytest.raises(ValueError, match="is not of the form"):
            validate_backup_id(bad)


def test_manifest_round_trips_and_rejects_unknown_formats():
    manifest = Manifest("20261124T020000Z-logical-a1b2c3", "logical", "2026-11-24T02:00:00+00:00",
                        "2026-11-24T02:05:00+00:00", {"name": "ubertruck_prod"}, {"pg_dump": "18"}, {"mode": "symmetric"},
                        [StoredObject("database.dump.zst.gpg", "database", 10, "0" * 64)], {"core.users": 3})
    assert Manifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(ValueError, match="unsupported manifest format"):
        Manifest.from_json(manifest.to_json().replace(b'"format": 1', b'"format": 99'))


def test_compare_counts_names_every_difference():
    assert compare_counts({"a": 1, "b": 2}, {"a": 1, "b": 2}) == []
    assert compare_counts({"a": 1, "b": 2}, {"a": 1, "c": 5}) == ["b: expected 2, restored no table",
                                                                  "c: expected no table, restored 5"]


def test_pg_dump_and_gpg_commands_carry_no_secret_in_argv():
    db = PostgresDatabase(host="db.internal", database="ubertruck_prod", user="admin", password=SecretStr("pw-SECRET"))
    dump = postgres.pg_dump_stage(db, "00000003-0000001B-1")
    assert "--snapshot=00000003-0000001B-1" in dump.argv and "--format=custom" in dump.argv
    assert "pw-SECRET" not in " ".join(map(str, dump.argv)) and dump.env["PGPASSWORD"] == "pw-SECRET"
    session = GpgSession(BackupEncryption(passphrase=SecretStr("phrase-SECRET")), "/tmp/none")
    stage = session.encrypt_stage()
    assert "phrase-SECRET" not in " ".join(stage.argv)
    assert ["--cipher-algo", "AES256"] == stage.argv[stage.argv.index("--cipher-algo"):][:2]
    assert ["--compress-algo", "none"] == stage.argv[stage.argv.index("--compress-algo"):][:2]
    assert len(stage.pass_fds) == 1


def test_restore_into_old_servers_drops_only_the_transaction_timeout_line():
    db = PostgresDatabase(database="x", user="u")
    assert [s.name for s in postgres.pg_restore_stages(db, "x", 180001)] == ["pg_restore"]
    assert [s.name for s in postgres.pg_restore_stages(db, "x", 150018)] == ["pg_restore", "sed", "psql"]


def test_logged_commands_mask_secrets():
    assert display(["tool", "--x=hunter2"], ["hunter2"]) == "tool --x=********"
    assert mask("a hunter2 b", ["hunter2", ""]) == "a ******** b"


def test_decrypt_failures_are_explained_in_operator_terms():
    symmetric = BackupEncryption(passphrase=SecretStr("p"))
    assert "BACKUP_ENCRYPTION_KEY" in explain_decrypt_failure("gpg: decryption failed: Bad session key", symmetric)
    public = BackupEncryption(recipients=["ABC"], public_keys="-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "BACKUP_GPG_PRIVATE_KEY" in explain_decrypt_failure("gpg: decryption failed: No secret key", public)


def test_slack_payloads_carry_no_secret():
    manifest = Manifest("20261124T020000Z-logical-a1b2c3", "logical", "t0", "t1", {}, {}, {},
                        [StoredObject("database.dump.zst.gpg", "database", 1 << 20, "0" * 64)], {"core.users": 7},
                        missing_paths=["/etc/nginx/sites-available/ubertruck"])
    success = notices.backup_succeeded("production", manifest, 75.0)
    assert "20261124T020000Z-logical-a1b2c3" in str(success) and "1m 15s" in str(success)
    assert "/etc/nginx/sites-available/ubertruck" in str(success)
    failure = notices.operation_failed("nightly backup", "production", "dump the database", "boom")
    assert failure["text"].startswith(":x: [production] nightly backup FAILED at step 'dump the database'")


def test_variables_make_blocks_and_missing_ones_are_named():
    base = {"DATABASE_URL": "postgresql://admin:p%40ss@db:5433/ubertruck_prod", "BACKUP_ENCRYPTION_KEY": "k",
            "BACKUP_REPOSITORY": "s3://ubertruck-backups/nightly", "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_SECRET_ACCESS_KEY": "s", "SLACK_WEBHOOK_URL": "https://hooks.example/x"}
    env = environment_from_variables(base)
    assert (env.database.host, env.database.port, env.database.password.get_secret_value()) == ("db", 5433, "p@ss")
    assert env.repository.prefix == "nightly" and env.repository.s3_bucket.bucket_name == "ubertruck-backups"
    assert env.repository.s3_bucket.credentials.aws_client_parameters.endpoint_url == "http://127.0.0.1:9000"
    assert env.archive.app_root == "/opt/ubertruck" and env.drill_database is None
    for missing, message in [("DATABASE_URL", "DATABASE_URL is required"),
                             ("BACKUP_ENCRYPTION_KEY", "BACKUP_ENCRYPTION_KEY"),
                             ("BACKUP_REPOSITORY", "BACKUP_REPOSITORY is required")]:
        with pytest.raises(ValueError, match=message):
            environment_from_variables({k: v for k, v in base.items() if k != missing})
    with pytest.raises(ValueError, match="absolute path"):
        environment_from_variables({**base, "BACKUP_REPOSITORY": "relative/dir"})


def test_params_are_json_when_they_parse_and_strings_otherwise():
    assert parse_params(["tag=v1.10.0", "n=3", "flag=true", "x=1.10", "confirm=ubertruck_prod"]) == {
        "tag": "v1.10.0", "n": 3, "flag": True, "x": 1.1, "confirm": "ubertruck_prod"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["oops"])


def test_a_backup_id_or_release_tag_with_a_trailing_newline_is_refused():
    from ubertruck_ops.core.releases import check_tag

    with pytest.raises(ValueError, match="is not of the form"):
        validate_backup_id("20261124T020000Z-logical-a1b2c3\n")
    assert backup_id_of_key("2026/11/24/20261124T020000Z-logical-a1b2c3\n/manifest.json") is None
    with pytest.raises(ValueError, match="is not a release tag"):
        check_tag("v1.10.0\n")
    assert check_tag("v1.10.0") == "v1.10.0"


def _manifest_json(**changes) -> bytes:
    import json

    manifest = Manifest("20261124T020000Z-logical-a1b2c3", "logical", "2026-11-24T02:00:00+00:00",
                        "2026-11-24T02:05:00+00:00", {"name": "ubertruck_prod"}, {}, {},
                        [StoredObject("database.dump.zst.gpg", "database", 10, "0" * 64)])
    raw = json.loads(manifest.to_json())
    raw.update(changes)
    return json.dumps(raw).encode()


def test_a_manifest_that_is_not_an_object_or_is_truncated_or_from_a_newer_release_is_a_value_error():
    for data, message in [(b"[1, 2]", "a JSON list, not an object"), (b'"text"', "a JSON str"),
                          (_manifest_json()[:40], "not JSON"), (b"\xff\xfe", "not JSON"),
                          (_manifest_json(format=2), "written by a newer release"),
                          (_manifest_json(format="1"), "unsupported manifest format '1'"),
                          (_manifest_json(finished_at="yesterday"), "not an ISO 8601 time"),
                          (_manifest_json(backup_id="../../etc"), "is not of the form"),
                          (_manifest_json(objects={"a": 1}), "objects is not a list"),
                          (_manifest_json(kind=None), "kind is not a string")]:
        with pytest.raises(ValueError, match=message):
            Manifest.from_json(data)


def test_unknown_keys_in_a_manifest_of_our_format_are_ignored():
    import json

    raw = json.loads(_manifest_json(added_later={"x": 1}))
    raw["objects"][0]["storage_class"] = "GLACIER"
    manifest = Manifest.from_json(json.dumps(raw).encode())
    assert manifest.backup_id == "20261124T020000Z-logical-a1b2c3" and manifest.objects[0].size == 10


def test_retention_never_deletes_a_folder_whose_manifest_it_cannot_read_however_old():
    from ubertruck_ops.core.retention import plan_retention

    old, newer = "20261001T020000Z-logical-aaaaaa", "20261120T020000Z-logical-bbbbbb"
    unreadable, leftover, running = "20260901T020000Z-logical-cccccc", "20261002T020000Z-logical-dddddd", \
        "20261124T010000Z-logical-eeeeee"
    records = [BackupRecord(old, NOW - timedelta(days=54), kind="logical"),
               BackupRecord(newer, NOW - timedelta(days=4), kind="logical")]
    folders = {old: NOW - timedelta(days=54), newer: NOW - timedelta(days=4), unreadable: NOW - timedelta(days=84),
               leftover: NOW - timedelta(days=53), running: NOW - timedelta(hours=1)}
    plan = plan_retention(records, folders, {old, newer, unreadable}, {unreadable: "logical"}, NOW, 30,
                          timedelta(hours=24))
    assert plan.expired == [old] and plan.leftovers == [leftover] and plan.unreadable == [unreadable]


def test_an_unreadable_incremental_keeps_every_physical_backup_before_it():
    from ubertruck_ops.core.retention import plan_retention

    base = BackupRecord("20261001T020000Z-base-aaaaaa", NOW - timedelta(days=54), kind="base")
    logical = BackupRecord("20261001T030000Z-logical-bbbbbb", NOW - timedelta(days=54), kind="logical")
    newest = BackupRecord("20261120T020000Z-base-cccccc", NOW - timedelta(days=4), kind="base")
    lost_link = "20261002T020000Z-incremental-dddddd"
    folders = {r.backup_id: r.finished_at for r in (base, logical, newest)} | {lost_link: NOW - timedelta(days=53)}
    plan = plan_retention([base, logical, newest], folders, set(folders), {lost_link: "incremental"}, NOW, 30,
                          timedelta(hours=24))
    assert plan.expired == [logical.backup_id], "the base the unreadable incremental may build on must stay"


def test_a_backup_that_finished_before_the_newest_in_the_repository_says_the_clock_may_be_behind():
    from ubertruck_ops.core.retention import clock_behind

    others = [BackupRecord("20261124T010000Z-logical-aaaaaa", NOW - timedelta(hours=1)),
              BackupRecord("20261123T020000Z-logical-bbbbbb", NOW - timedelta(days=1))]
    mine = "20261124T000000Z-logical-cccccc"
    assert clock_behind(mine, NOW, others + [BackupRecord(mine, NOW)]) is None
    warning = clock_behind(mine, NOW - timedelta(hours=2), others)
    assert "is this host's clock behind?" in warning and "1h 00m before backup 20261124T010000Z-logical-aaaaaa" \
        in warning and "Nothing was deleted because of it" in warning


def test_failure_notices_say_a_complete_backup_is_kept_and_what_retention_freed():
    kept = notices.backup_kept_after_failure("nightly backup", "production", "20261124T020000Z-logical-a1b2c3",
                                             "apply retention", "RepositoryError: delete failed")
    assert kept["text"] == (":x: [production] nightly backup FAILED at step 'apply retention' after backup "
                            "20261124T020000Z-logical-a1b2c3 completed: the backup is complete and kept")
    assert notices.after_failed_backup({"expired": ["x"], "bytes_freed": 3 << 20}) == [
        "retention after the failure freed 3.0 MiB: 1 expired backup(s) deleted"]
    assert notices.after_failed_backup({"expired": [], "bytes_freed": 0}) == []
    assert notices.after_failed_backup({"failed_backup_removed": True}) == [
        "retention after the failure could not run (see the run log)"]
    unreadable = notices.unreadable_manifests("production", {"2026/10/01/x/manifest.json": "unsupported format 2"})
    assert "retention kept 1 backup(s) whose manifest it cannot read" in unreadable["text"]
    assert "`2026/10/01/x/manifest.json`: unsupported format 2" in str(unreadable)


def test_no_space_left_is_recognised_through_the_errors_it_caused():
    import errno

    from ubertruck_ops.tasks.catalog import out_of_space, repository_full

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("dump failed") from inner
    except RuntimeError as outer:
        assert out_of_space(outer)
    assert not out_of_space(RuntimeError("pg_dump failed (killed by signal 9)"))
    message = str(repository_full("local folder /srv/backups", OSError(errno.ENOSPC, "No space left on device"),
                                  {"failed_backup_removed": True, "expired": ["20261001T020000Z-logical-aaaaaa"],
                                   "bytes_freed": 5 << 20}))
    assert message.startswith("the backup repository local folder /srv/backups is full (no space left on device): "
                              "the backup failed and left no manifest and no partial object; retention then freed "
                              "5.0 MiB (1 expired backup(s): 20261001T020000Z-logical-aaaaaa)")
    nothing = str(repository_full("x", OSError(errno.ENOSPC, "full"), {"failed_backup_removed": True, "expired": [],
                                                                    "bytes_freed": 0}))
    assert "retention found nothing expired to free: add space, or lower keep_full_days" in nothing
