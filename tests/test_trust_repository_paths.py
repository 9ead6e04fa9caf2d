"""Manifest object names cannot read outside a local repository (issue 22, item 13f): whoever can write
the repository writes manifests too; an object named `../../secret` or `/abs/secret`, or an object that
is a link leading out, was read by restore and verify, and the SHA-256 prefix of what it found went into
the error. Now such a manifest is refused before anything is read, and the repository never opens a key
that leads outside its folder. Real parts: PostgreSQL 18, gpg, a local repository."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import pytest

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import MANIFEST_NAME, Manifest, backup_folder, new_backup_id
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.flows.restore_drill import restore_drill
from ubertruck_ops.tasks import load
from ubertruck_ops.tasks.repository import KeyOutsideRepository, LocalRepository

from tests.helpers import make_database, save_env
from tests.parts import flow_run_logs


@pytest.fixture(scope="module")
def small_db(pg18):
    return make_database(pg18, size_mb=2)


def _plant(repo: Path, template: Path, name_of_first: str | None = None) -> str:
    """Copy a real backup under a new id, its first object renamed to `name_of_first` in the manifest."""
    manifest = json.loads(template.read_text())
    backup_id = new_backup_id(Manifest.from_json(template.read_bytes()).started, "logical", secrets.token_hex(3))
    folder = repo / backup_folder(backup_id)
    folder.mkdir(parents=True)
    for path in template.parent.iterdir():
        if path.name != MANIFEST_NAME:
            (folder / path.name).write_bytes(path.read_bytes())
    manifest["backup_id"] = backup_id
    if name_of_first is not None:
        manifest["objects"][0]["name"] = name_of_first
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return backup_id


@pytest.mark.parametrize("how", ["relative", "absolute", "link"])
def test_a_manifest_naming_an_object_outside_the_local_repository_is_refused_before_anything_is_read(
        small_db, local_repo, tmp_path, how):
    secret = tmp_path / "outside" / "secret.bin"
    secret.parent.mkdir()
    secret.write_bytes(b"root:$6$NOT-FOR-THE-LOGS\n" * 64)
    prefix = hashlib.sha256(secret.read_bytes()).hexdigest()[:12]
    env = save_env(small_db, BackupRepository(url=str(local_repo)))
    real = nightly_backup(environment=env)["backup_id"]
    template = local_repo / backup_folder(real) / MANIFEST_NAME
    if how == "link":
        planted = _plant(local_repo, template)
        dump = local_repo / backup_folder(planted) / "database.dump.zst.gpg"
        dump.unlink()
        dump.symlink_to(secret)
    else:
        name = os.path.relpath(secret, local_repo / backup_folder(real)) if how == "relative" else str(secret)
        assert name.startswith("../" if how == "relative" else "/")
        planted = _plant(local_repo, template, name)
    opened_before = secret.stat().st_atime_ns

    verified = restore_drill(environment=env, backup_id=planted, return_state=True)
    restored = restore(environment=env, backup_id=planted, confirm=small_db.database, return_state=True)

    for state in (verified, restored):
        assert state.is_failed()
        said = str(state.message) + flow_run_logs(state)
        if how == "link":
            assert "leads outside" in said or "not a regular file" in said or "cannot be read" in said, said[-1500:]
        else:
            assert "is not a plain file name of the backup's folder" in said, said[-1500:]
        assert prefix not in said, "a SHA-256 prefix of the file outside the repository reached the run"
        assert "NOT-FOR-THE-LOGS" not in said
    assert secret.stat().st_atime_ns == opened_before or how == "link"
    # The real backup next to it is untouched and still verifies.
    load.verify_objects.fn(LocalRepository(str(local_repo)), Manifest.from_json(template.read_bytes()))


def test_the_local_repository_opens_no_key_that_leads_outside_its_folder(tmp_path):
    root = tmp_path / "repository"
    (root / "2026").mkdir(parents=True)
    (tmp_path / "secret").write_text("outside")
    (root / "2026" / "out").symlink_to(tmp_path)
    (root / "2026" / "file-link").symlink_to(tmp_path / "secret")
    (root / "2026" / "real.gpg").write_text("inside")
    (root / "2026" / "inner-link").symlink_to(root / "2026" / "real.gpg")
    repo = LocalRepository(str(root))
    for key in ("../secret", "/etc/passwd", "2026/../../secret", "2026/out/secret", "2026/file-link", "2026//x",
                "./2026"):
        with pytest.raises(KeyOutsideRepository):
            repo.get_bytes(key)
    with pytest.raises(OSError):                     # a final link is never followed, even one staying inside
        repo.get_bytes("2026/inner-link")
    assert repo.get_bytes("2026/real.gpg") == b"inside"
    with pytest.raises(KeyOutsideRepository):
        repo.writer("2026/out/new.gpg")
    assert [item.key for item in repo.list("")] == ["2026/real.gpg"]    # links are no objects of ours
