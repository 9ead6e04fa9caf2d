"""No path loses a backup (issue 11): retention fails closed on manifests it cannot read, a backup
is final once its manifest is written, a full repository frees itself (clocks: test_trust_clock.py).

Real parts: PostgreSQL 18, gpg, a local repository (a real tmpfs for the full disk), moto's S3
over HTTP behind a proxy that denies chosen requests, a Slack receiver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import MANIFEST_NAME, Manifest, StoredObject, backup_folder, iso
from ubertruck_ops.core.text import human_bytes
from ubertruck_ops.flows.checklists import morning_checklist
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.tasks import load
from ubertruck_ops.tasks.checks.orchestration import checklist_rows
from ubertruck_ops.tasks.repository import open_repository

from tests.helpers import make_database, require, s3_repository, save_env
from tests.parts import flow_run_logs

DAY = 86400


@pytest.fixture(scope="module")
def small_db(pg18):
    """One small database for the whole module: these tests are about the repository, not the data."""
    return make_database(pg18, size_mb=2)


def fake_manifest(backup_id: str, age_days: float, size: int = 65) -> Manifest:
    finished = iso(datetime.now(UTC) - timedelta(days=age_days))
    return Manifest(backup_id=backup_id, kind="logical", started_at=finished, finished_at=finished,
                    database={"name": "ubertruck_prod"}, tools={}, encryption={"mode": "symmetric"},
                    objects=[StoredObject("database.dump.zst.gpg", "database", size, "0" * 64)])


def fake_local_backup(root: Path, backup_id: str, age_days: float, manifest: bytes | None, size: int = 65) -> Path:
    """A backup folder in a local repository, its files dated `age_days` back; `manifest` as given (None: none)."""
    folder = root / backup_folder(backup_id)
    folder.mkdir(parents=True)
    (folder / "database.dump.zst.gpg").write_bytes(b"\x8c" + os.urandom(size - 1))
    if manifest is not None:
        (folder / MANIFEST_NAME).write_bytes(manifest)
    stamp = time.time() - age_days * DAY
    for path in folder.iterdir():
        os.utime(path, (stamp, stamp))
    return folder


def test_manifests_retention_cannot_read_survive_far_past_the_grace_and_are_reported_in_log_slack_and_checklist(
        pg18, small_db, local_repo, slack):
    env = save_env(small_db, BackupRepository(url=str(local_repo), keep_full_days=30), slack_url=slack.webhook())
    newer_format = json.loads(fake_manifest("20260901T020000Z-logical-aaaaa1", 60).to_json())
    newer_format["format"] = 2
    unreadable = {
        "20260901T020000Z-logical-aaaaa1": json.dumps(newer_format).encode(),               # after a downgrade
        "20260902T020000Z-logical-aaaaa2": fake_manifest("20260902T020000Z-logical-aaaaa2", 60).to_json()[:90],
        "20260903T020000Z-logical-aaaaa3": b"[1, 2, 3]",                                       # crashed retention
        "20260904T020000Z-logical-aaaaa4": fake_manifest("20260101T020000Z-logical-ffffff", 60).to_json(),
    }
    folders = {backup_id: fake_local_backup(local_repo, backup_id, 60, data) for backup_id, data in unreadable.items()}
    # One unknown field in a manifest of our format is read (and this one is not expired): kept, not reported.
    extended = json.loads(fake_manifest("20261101T020000Z-logical-bbbbbb", 3).to_json())
    extended["added_by_a_later_release"] = {"x": 1}
    readable = fake_local_backup(local_repo, "20261101T020000Z-logical-bbbbbb", 3, json.dumps(extended).encode())
    leftover = fake_local_backup(local_repo, "20260905T020000Z-logical-cccccc", 60, None)

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    for backup_id, folder in folders.items():
        assert (folder / MANIFEST_NAME).read_bytes() == unreadable[backup_id], f"{backup_id} was touched"
        assert (folder / "database.dump.zst.gpg").exists()
    assert (readable / MANIFEST_NAME).exists()
    assert not leftover.exists(), "a folder with no manifest at all still goes after the grace"
    keys = {f"{backup_folder(i)}/{MANIFEST_NAME}" for i in unreadable}
    assert set(result["retention"]["unreadable"]) == keys
    assert result["retention"]["incomplete_removed"] == ["20260905T020000Z-logical-cccccc"]
    logs = flow_run_logs(state)
    for key in keys:
        assert f"manifest {key} is unreadable" in logs
    assert "written by a newer release" in logs and "a JSON list, not an object" in logs and "not JSON" in logs
    assert "it names backup 20260101T020000Z-logical-ffffff, not its folder's" in logs
    [report] = [p for p in slack.posts if "whose manifest it cannot read" in p["text"]]
    assert report["text"].endswith("retention kept 4 backup(s) whose manifest it cannot read")
    assert all(f"`{key}`" in str(report) for key in keys)
    assert any("nightly backup completed" in t for t in slack.texts())

    checklist = morning_checklist(environment=env, return_state=True)
    rows = {row["name"]: row for row in checklist_rows(checklist.state_details.flow_run_id)}
    backup = rows["last night's backup"]
    assert backup["status"] == "warn", backup
    assert "4 unreadable manifest(s), kept by retention: 2026/09/01/20260901T020000Z-logical-aaaaa1/manifest.json" \
        in backup["detail"]


@pytest.fixture
def s3_env(small_db, s3_proxy, s3_client, slack):
    repo = s3_repository(s3_proxy.url, s3_client)
    return repo, save_env(small_db, repo, slack_url=slack.webhook())


def put_fake_s3_backup(s3_client, repo: BackupRepository, backup_id: str, age_days: float) -> list[str]:
    prefix = f"{repo.prefix}/{backup_folder(backup_id)}"
    keys = [f"{prefix}/database.dump.zst.gpg", f"{prefix}/{MANIFEST_NAME}"]
    s3_client.put_object(Bucket=repo.s3_bucket.bucket_name, Key=keys[0], Body=b"\x8c" + os.urandom(64))
    s3_client.put_object(Bucket=repo.s3_bucket.bucket_name, Key=keys[1],
                         Body=fake_manifest(backup_id, age_days).to_json())
    return keys


def bucket_keys(s3_client, repo: BackupRepository) -> set[str]:
    return {o["Key"] for o in s3_client.list_objects_v2(Bucket=repo.s3_bucket.bucket_name).get("Contents", [])}


def test_s3_denying_delete_during_retention_fails_the_run_but_keeps_the_complete_backup(s3_env, s3_proxy, s3_client,
                                                                                       slack):
    repo, env = s3_env
    expired = put_fake_s3_backup(s3_client, repo, "20260901T020000Z-logical-aaaaaa", 60)
    put_fake_s3_backup(s3_client, repo, "20261120T020000Z-logical-bbbbbb", 1)   # last night's
    # Retention's DeleteObjects is denied once: the discard of old would then have succeeded.
    s3_proxy.fail_next(1, "POST", "?delete", status=403, code="AccessDenied")

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_failed()
    [new] = [m for m in open_repository(repo).list("") if m.key.endswith(MANIFEST_NAME) and "aaaaaa" not in m.key
             and "bbbbbb" not in m.key]
    manifest = Manifest.from_json(open_repository(repo).get_bytes(new.key))
    assert f"backup {manifest.backup_id} is complete and kept; the run failed after it at step 'apply retention'" \
        in str(state.message) and "AccessDenied" in str(state.message)
    load.verify_objects.fn(open_repository(repo), manifest)   # every object there, every checksum right
    assert set(expired) <= bucket_keys(s3_client, repo), "the denied delete changed nothing"
    [notice] = [p for p in slack.posts if "FAILED" in p["text"]]
    assert notice["text"] == (f":x: [{env}] nightly backup FAILED at step 'apply retention' after backup "
                              f"{manifest.backup_id} completed: the backup is complete and kept")
    assert not [t for t in slack.texts() if "nightly backup completed" in t]


def test_s3_answering_a_batch_delete_with_per_key_denials_fails_retention_and_keeps_the_backup(s3_env, s3_proxy,
                                                                                              s3_client, slack):
    repo, env = s3_env
    expired = put_fake_s3_backup(s3_client, repo, "20260901T020000Z-logical-aaaaaa", 60)
    put_fake_s3_backup(s3_client, repo, "20261120T020000Z-logical-bbbbbb", 1)   # last night's
    # A bucket policy denying s3:DeleteObject: DeleteObjects answers 200 and lists an error per key.
    s3_proxy.deny_batch_deletes = True

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_failed()
    assert "is complete and kept" in str(state.message) and "S3 refused to delete 2 of 2 object(s)" in str(state.message)
    assert "AccessDenied" in str(state.message)
    assert set(expired) <= bucket_keys(s3_client, repo)
    new = [m for m in open_repository(repo).list("") if m.key.endswith(MANIFEST_NAME)
           and "aaaaaa" not in m.key and "bbbbbb" not in m.key]
    assert len(new) == 1, "the night's backup is kept"


def test_a_manifest_s3_refuses_to_hand_out_is_kept_and_reported_never_deleted(s3_env, s3_proxy, s3_client, slack):
    repo, env = s3_env
    denied = put_fake_s3_backup(s3_client, repo, "20260901T020000Z-logical-aaaaaa", 60)
    put_fake_s3_backup(s3_client, repo, "20261120T020000Z-logical-bbbbbb", 1)   # last night's
    s3_proxy.fail_always("GET", "20260901T020000Z-logical-aaaaaa/manifest.json", status=403, code="AccessDenied")

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_completed(), state.message
    assert set(denied) <= bucket_keys(s3_client, repo)
    key = f"{backup_folder('20260901T020000Z-logical-aaaaaa')}/{MANIFEST_NAME}"
    assert "could not be read" in state.result()["retention"]["unreadable"][key]
    assert any("whose manifest it cannot read" in t for t in slack.texts())


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs: a repository disk that really fills up."""
    require(os.geteuid() == 0, "this test needs root to mount a tmpfs (mount -t tmpfs -o size=4M tmpfs DIR)")
    mount = tmp_path / "tiny-repository"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    require(done.returncode == 0, f"mounting a tmpfs failed: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_repository_fails_the_backup_clearly_retention_frees_the_expired_one_and_the_next_backup_succeeds(
        small_db, tiny_disk, slack):
    env = save_env(small_db, BackupRepository(url=str(tiny_disk), keep_full_days=30), slack_url=slack.webhook())
    # Last night's backup: retention judges ages only while backups run on schedule (core/clock.py).
    recent = fake_local_backup(tiny_disk, "20261120T020000Z-logical-bbbbbb", 1,
                               fake_manifest("20261120T020000Z-logical-bbbbbb", 1).to_json())
    # The expired backup takes all but 8 KiB of the disk: no dump fits.
    size = shutil.disk_usage(tiny_disk).free - 8192 - 4096
    expired = fake_local_backup(tiny_disk, "20260901T020000Z-logical-aaaaaa", 60,
                                fake_manifest("20260901T020000Z-logical-aaaaaa", 60, size).to_json(), size)
    assert shutil.disk_usage(tiny_disk).free <= 8192
    before = {p for p in tiny_disk.rglob("*") if p.is_file()} - set(expired.iterdir())
    freed = human_bytes(sum(p.stat().st_size for p in expired.iterdir()))

    state = nightly_backup(environment=env, return_state=True)

    assert state.is_failed()
    message = str(state.message)
    assert f"the backup repository local folder {tiny_disk} is full (no space left on device): the backup failed " \
           f"and left no manifest and no partial object; retention then freed {freed} (1 expired backup(s): " \
           "20260901T020000Z-logical-aaaaaa), so the next backup has that much more room" in message, message
    assert {p for p in tiny_disk.rglob("*") if p.is_file()} == before, "only the recent backup may remain"
    assert (recent / MANIFEST_NAME).exists()
    [notice] = [p for p in slack.posts if "FAILED" in p["text"]]
    assert f"retention after the failure freed {freed}: 1 expired backup(s) deleted" in str(notice)

    again = nightly_backup(environment=env, return_state=True)
    assert again.is_completed(), again.message
    assert len(list(tiny_disk.rglob(MANIFEST_NAME))) == 2
