"""Nobody gets in (issue 11, items 9, 10 and 11): the API `serve` starts authenticates, files we
write are private whatever the umask, errors name what is wrong and never the secret."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.deployments.serve import wait_for_api
from ubertruck_ops.tasks.scratch_postgres import free_port

from tests.helpers import new_env_name, save_env, stop_process
from tests.parts import processes

PROJECT = Path(__file__).resolve().parents[1]
UBERTRUCK_OPS = PROJECT / ".venv" / "bin" / "ubertruck-ops"


def test_the_api_serve_starts_refuses_requests_without_the_auth_string_kept_0600_and_on_no_command_line(tmp_path):
    home = tmp_path / "prefect-home"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    log = open(tmp_path / "serve.log", "wb")
    serving = subprocess.Popen([UBERTRUCK_OPS, "serve", "--port", str(port)], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_for_api(api, serving, 240)
        secret_file = home / "api-auth-string"
        auth = secret_file.read_text().strip()
        assert len(auth) >= 32 and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        user, _, password = auth.partition(":")
        reads = {"blocks": ("POST", "/block_documents/filter", {"include_secrets": True}),
                 "flows": ("POST", "/flows/filter", {}), "settings": ("GET", "/admin/settings", None)}
        for what, (method, path, body) in reads.items():
            refused = httpx.request(method, f"{api}{path}", json=body, timeout=10)
            assert refused.status_code == 401, (what, refused.status_code)
            wrong = httpx.request(method, f"{api}{path}", json=body, auth=(user, "guess"), timeout=10)
            assert wrong.status_code == 401, what
            allowed = httpx.request(method, f"{api}{path}", json=body, auth=(user, password), timeout=10)
            assert allowed.status_code == 200, (what, allowed.status_code)
        assert not [line for line in [cmdline for _, cmdline in processes().values()] if auth in line or password in line]
    finally:
        stopped = stop_process(serving, signal.SIGINT, timeout=60)     # killed after that: nothing outlives the test
        log.close()
    assert stopped is not None, "serve did not exit within 60 s of SIGINT (killed)"
    output = (tmp_path / "serve.log").read_text()
    assert str(secret_file) in output and password not in output


def test_a_token_in_app_repo_url_is_refused_naming_the_variable_never_the_value(tmp_path):
    token = "ghp_Sentinel8842"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "DATABASE_URL": "postgresql://u@h/d",
           "BACKUP_ENCRYPTION_KEY": "k", "BACKUP_REPOSITORY": str(tmp_path / "repo"),
           "APP_REPO_URL": f"https://{token}@github.com/u/a.git"}
    refused = subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", "blocks", "init", "--name",
                              new_env_name()], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "APP_REPO_URL" in refused.stderr and "must not carry a password or token" in refused.stderr
    assert "Sentinel" not in refused.stdout + refused.stderr and "8842" not in refused.stdout + refused.stderr


def test_a_block_that_fails_validation_is_reported_as_malformed_by_its_name_not_as_missing(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentUpdate

    from ubertruck_ops.blocks.app import AppHost
    from ubertruck_ops.blocks.environment import load_environment

    name = save_env(PostgresDatabase(database="d", user="u"), BackupRepository(url=str(tmp_path / "repo")),
                    app=AppHost(app_root=str(tmp_path / "app")))
    for block in (f"{name}-repository", f"{name}-app"):          # a required block, then an optional one
        with get_client(sync_client=True) as client:
            slug = "ubertruck-backup-repository" if block.endswith("repository") else "ubertruck-app-host"
            document = client.read_block_document_by_name(block, slug)
            bad = {"keep_full_days": "forever"} if slug.endswith("repository") else {"instances": 0}
            client.update_block_document(document.id, BlockDocumentUpdate(data={**document.data, **bad}))
        with pytest.raises(ValueError) as refused:
            load_environment(name)
        message = str(refused.value)
        assert f"{slug}/{block} is malformed" in message and "not found" not in message, message
        assert ("keep_full_days" if slug.endswith("repository") else "instances") in message
        with get_client(sync_client=True) as client:           # put it right for the next round
            client.update_block_document(document.id, BlockDocumentUpdate(data=document.data))


def _open_to_others(root: Path) -> list[str]:
    return [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p}" for p in root.rglob("*") if p.lstat().st_mode & 0o077]


def test_a_local_backup_a_wal_push_and_fetched_wal_are_private_even_with_umask_022(source_db, local_repo, tmp_path):
    from ubertruck_ops.blocks.environment import load_environment
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.tasks.crypto import gpg_session
    from ubertruck_ops.tasks.repository import LocalRepository
    from ubertruck_ops.tasks.wal import fetch_segments, push_segment

    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    segment = tmp_path / "000000010000000000000007"
    segment.write_bytes(os.urandom(1 << 16))
    spool = tmp_path / "restore" / "pg_wal_fetched"
    previous = os.umask(0o022)
    try:
        state = nightly_backup(environment=env, return_state=True)
        assert state.is_completed(), state.message
        blocks = load_environment(env)
        repo = LocalRepository(str(local_repo))
        assert push_segment(blocks, str(segment), repo) == "archived"
        with gpg_session(blocks.encryption) as gpg:
            fetch_segments(repo, [segment.name], gpg, spool)
    finally:
        os.umask(previous)
    assert len(list(local_repo.rglob("manifest.json"))) == 1 and (spool / segment.name).read_bytes() == \
        segment.read_bytes()
    assert _open_to_others(local_repo) == [] and _open_to_others(spool.parent) == []
