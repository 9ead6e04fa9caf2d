"""`ubertruck-ops wal-push` (PostgreSQL's archive_command) as PostgreSQL runs it: a real process per
segment that reads its blocks from the Prefect API in PREFECT_API_URL over HTTP, never imports
Prefect and never starts an API of its own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.plain import ENCRYPTION_SLUG, REPOSITORY_SLUG, EncryptionKeys, check_repository_location
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.tasks.crypto import gpg_session
from ubertruck_ops.tasks.repository import LocalRepository, open_repository
from ubertruck_ops.tasks.wal import fetch_segments
from ubertruck_ops.tasks.wal_push import repository_from_document

from tests.helpers import s3_repository, save_env

COMMAND = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "ubertruck-ops")
DB = PostgresDatabase(database="d", user="u")


def wal_push(segment: Path, environment: str, api: str | None = "default", **extra: str) -> subprocess.CompletedProcess:
    """Run the console script as archive_command does, with Python's import log on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    if api is not None:
        env["PREFECT_API_URL"] = PREFECT_API_URL.value() if api == "default" else api
    env.update(PYTHONPROFILEIMPORTTIME="1", **extra)
    return subprocess.run([COMMAND, "wal-push", str(segment), "--environment", environment], env=env,
                          capture_output=True, text=True, timeout=120)


def imported(result: subprocess.CompletedProcess) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
            and "|" in line}


def said(result: subprocess.CompletedProcess) -> str:
    return result.stdout + "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))


def segment_file(folder: Path, number: int, size: int = 1 << 20) -> Path:
    path = folder / f"0000000100000000{number:08X}"
    path.write_bytes(os.urandom(size // 4) + bytes(size - size // 4))
    return path


def fetched(repo, passphrase: str, segment: Path, folder: Path) -> bytes:
    with gpg_session(BackupEncryption(passphrase=SecretStr(passphrase))) as gpg:
        fetch_segments.fn(repo, [segment.name], gpg, folder)     # the task's body: no task run needed here
    return (folder / segment.name).read_bytes()


def test_wal_push_archives_into_a_local_repository_without_importing_prefect(local_repo, tmp_path):
    passphrase = "local-wal-passphrase-SENTINEL"
    name = save_env(DB, BackupRepository(url=str(local_repo)), passphrase=passphrase)
    segment = segment_file(tmp_path, 0x42)

    first = wal_push(segment, name)
    again = wal_push(segment, name)

    assert first.returncode == 0, said(first)[-2000:]
    assert f"wal-push {segment.name}: archived" in first.stdout
    assert again.returncode == 0 and "already archived" in again.stdout
    modules = imported(first)
    assert "ubertruck_ops.tasks.wal_push" in modules, "the import log was not read"
    assert not {m for m in modules if m.split(".")[0] in ("prefect", "prefect_aws")}, "wal-push imported Prefect"
    stored = (local_repo / "wal" / f"{segment.name}.zst.gpg").read_bytes()
    assert stored[0] in (0x8C, 0xC3) and bytes(64) not in stored      # OpenPGP, not the plaintext's zeros
    assert fetched(LocalRepository(str(local_repo)), passphrase, segment, tmp_path / "back") == segment.read_bytes()
    assert passphrase not in said(first) + said(again)


def test_wal_push_archives_into_s3_and_refuses_different_content_under_the_same_name(moto_server, s3_client,
                                                                                     tmp_path):
    passphrase, secret_key = "s3-wal-passphrase-SENTINEL", "aws-secret-key-SENTINEL"
    block = s3_repository(moto_server, s3_client, secret_key=secret_key)
    name = save_env(DB, block, passphrase=passphrase)
    segment = segment_file(tmp_path, 0x43)

    first = wal_push(segment, name)
    original = segment.read_bytes()
    segment.write_bytes(os.urandom(1 << 20))
    different = wal_push(segment, name)

    assert first.returncode == 0 and "archived" in first.stdout, said(first)[-2000:]
    assert different.returncode == 1 and "refusing to overwrite" in different.stderr
    bucket = block.s3_bucket.bucket_name
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"backups/wal/{segment.name}.json", f"backups/wal/{segment.name}.zst.gpg"]
    head = s3_client.head_object(Bucket=bucket, Key=keys[1])
    assert head.get("ServerSideEncryption") == "AES256"
    assert fetched(open_repository(block), passphrase, segment, tmp_path / "back") == original   # the first, kept
    for output in (said(first), said(different)):
        assert passphrase not in output and secret_key not in output


def test_wal_push_without_prefect_api_url_refuses_saying_what_to_set_and_archives_nothing(tmp_path):
    segment = segment_file(tmp_path, 0x44, size=4096)
    home = tmp_path / "prefect-home"

    refused = wal_push(segment, "production", api=None, PREFECT_HOME=str(home))

    assert refused.returncode != 0
    assert "PREFECT_API_URL is not set" in refused.stderr and "PREFECT_API_AUTH_STRING" in refused.stderr
    assert "archive_command = 'PREFECT_API_URL=" in refused.stderr
    assert not home.exists()            # no private API started: it would have made PREFECT_HOME


def test_wal_push_names_the_missing_block_and_an_unreachable_api(tmp_path):
    segment = segment_file(tmp_path, 0x45, size=4096)

    missing = wal_push(segment, "no-such-environment")
    from ubertruck_ops.tasks.scratch_postgres import free_port
    unreachable = wal_push(segment, "no-such-environment", api=f"http://127.0.0.1:{free_port()}/api")

    assert missing.returncode == 1
    assert f"block {ENCRYPTION_SLUG}/no-such-environment-encryption not found" in missing.stderr
    assert "ubertruck-ops blocks init --name no-such-environment" in missing.stderr
    assert unreachable.returncode == 1 and "is unreachable" in unreachable.stderr


def test_wal_push_says_when_the_api_refuses_its_credentials(tmp_path):
    """A server that requires basic auth (PREFECT_SERVER_API_AUTH_STRING) answers 401: say what to set."""
    import http.server
    import threading

    seen = []

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"exception_message": "Unauthorized"}')

        def log_message(self, *args):   # quiet: the test reads the client's words, not the server's
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        refused = wal_push(segment_file(tmp_path, 0x46, size=4096), "prod",
                           api=f"http://127.0.0.1:{server.server_port}/api",
                           PREFECT_API_AUTH_STRING="admin:auth-SENTINEL")
    finally:
        server.shutdown()
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr
    assert "PREFECT_API_AUTH_STRING" in refused.stderr and "auth-SENTINEL" not in said(refused)
    assert seen and seen[0].startswith("Basic ")      # sent as Prefect's client sends it


# The plain rules (blocks/plain.py) and the Block classes agree on every verdict.
ENCRYPTIONS = [dict(passphrase="p"), dict(), dict(passphrase="p", recipients=["ops@x"], public_keys="K"),
               dict(recipients=["ops@x"]), dict(recipients=["ops@x"], public_keys="-----BEGIN PGP")]
LOCATIONS = [("/srv/backups", False), ("backups", False), ("s3://b/p", False), ("s3://b/p", True),
             ("relative/s3://", True)]


@pytest.mark.parametrize("fields", ENCRYPTIONS, ids=str)
def test_plain_encryption_keys_refuse_what_the_block_refuses(fields):
    def verdict(build):
        try:
            build()
            return "ok"
        except ValueError as exc:        # pydantic's ValidationError is a ValueError
            return "refused: " + ("exactly one" if "exactly one" in str(exc) else "public keys")

    secret = {k: SecretStr(v) if k == "passphrase" else v for k, v in fields.items()}
    plain = {k: tuple(v) if k == "recipients" else v for k, v in secret.items()}
    assert verdict(lambda: EncryptionKeys(**plain)) == verdict(lambda: BackupEncryption(**secret))


@pytest.mark.parametrize("url,has_bucket", LOCATIONS, ids=str)
def test_plain_repository_rules_refuse_what_the_block_refuses(url, has_bucket, moto_server, s3_client):
    bucket = s3_repository(moto_server, s3_client).s3_bucket if has_bucket else None

    def verdict(build):
        try:
            build()
            return "ok"
        except ValueError:
            return "refused"

    assert verdict(lambda: check_repository_location(url, has_bucket)) == \
        verdict(lambda: BackupRepository(url=url, s3_bucket=bucket))


def test_a_repository_document_is_read_as_the_block_reads_it(moto_server, s3_client):
    block = s3_repository(moto_server, s3_client, secret_key="doc-secret", part_mib=7)
    data = block.model_dump(mode="json", context={"include_secrets": True})
    repo = repository_from_document(data, "block x")
    assert (repo.bucket, repo.prefix, repo.part_size, repo.sse) == (block.s3_bucket.bucket_name, "backups", 7 << 20,
                                                                    "AES256")
    repo.put_bytes("probe", b"1")
    assert open_repository(block).get_bytes("probe") == b"1"
    for broken, field in ((dict(data, part_size_mib=600), "part_size_mib"), (dict(data, s3_bucket=None), "S3 bucket"),
                          (dict(data, url=3), "url")):
        with pytest.raises(ValueError, match=field) as caught:
            repository_from_document(broken, "block x")
        assert "doc-secret" not in str(caught.value)
    assert (ENCRYPTION_SLUG, REPOSITORY_SLUG) == (BackupEncryption.get_block_type_slug(),
                                                  BackupRepository.get_block_type_slug())
