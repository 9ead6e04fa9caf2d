"""Helpers the tests import (conftest.py keeps only fixtures and the session's settings).

A missing part fails the test with the command that installs it; nothing skips.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.environment import Environment, save_environment
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.sandbox import data
from ubertruck_ops.tasks.scratch_postgres import LocalServer, free_port

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


def require(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(message, pytrace=False)


def make_database(server: LocalServer, size_mb: int = 12) -> PostgresDatabase:
    """Create a fresh Ubertruck database owned by a fresh login role; return its block."""
    name = f"ut_{secrets.token_hex(4)}"
    owner = f"owner_{name}"
    password = secrets.token_urlsafe(12)
    with psycopg.connect(**server.database().connect_kwargs(), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{owner}" LOGIN CREATEROLE CREATEDB PASSWORD \'{password}\'')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    db = PostgresDatabase(host="127.0.0.1", port=server.port, database=name, user=owner, password=SecretStr(password))
    with psycopg.connect(**db.connect_kwargs()) as conn:
        data.apply_schema(conn)
        data.generate(conn, size_mb)
    return db


def new_env_name() -> str:
    return f"t-{secrets.token_hex(4)}"


def save_env(db: PostgresDatabase, repo: BackupRepository, *, app_root: Path | None = None,
             passphrase: str | None = None, encryption: BackupEncryption | None = None,
             slack_url: str | None = None, drill: PostgresDatabase | None = None, name: str | None = None,
             app: AppHost | None = None, ping_url: str | None = None,
             app_config: dict[str, str] | None = None) -> str:
    """Save a test environment's blocks; return its name. With `app`, the services' configuration is
    `app_config` (default: the DATABASE_URL and JWT_SECRET the sample services need to start)."""
    from prefect.types import SecretDict

    from ubertruck_ops.blocks.app_config import AppConfiguration

    name = name or new_env_name()
    if app is not None and app_config is None:
        app_config = {"DATABASE_URL": db.url(), "JWT_SECRET": secrets.token_urlsafe(24)}
    env = Environment(
        database=db,
        encryption=encryption or BackupEncryption(passphrase=SecretStr(passphrase or secrets.token_urlsafe(24))),
        repository=repo,
        slack=SlackNotices(webhook_url=SecretStr(slack_url) if slack_url else None, timeout_seconds=3,
                           ping_url=SecretStr(ping_url) if ping_url else None),
        archive=ArchiveSources(app_root=str(app_root) if app_root else None,
                               config_files=[str(app_root / "shared" / ".env.production")] if app_root else []),
        drill_database=drill, app=app,
        app_config=AppConfiguration(values=SecretDict(app_config)) if app_config is not None else None)
    save_environment(env, name)
    return name


def s3_repository(endpoint: str, s3_client, secret_key: str = "test", part_mib: int = 5) -> BackupRepository:
    """Create a fresh bucket and return a repository block on it through `endpoint`."""
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    bucket = f"ubertruck-{secrets.token_hex(4)}"
    s3_client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    credentials = AwsCredentials(aws_access_key_id="AKIATESTKEY", aws_secret_access_key=SecretStr(secret_key),
                                 region_name="ap-south-1",
                                 aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))
    return BackupRepository(url=f"s3://{bucket}/backups",
                            s3_bucket=S3Bucket(bucket_name=bucket, credentials=credentials), part_size_mib=part_mib)


def make_app_host(pm2_path: str, repository: Path) -> AppHost:
    """A fresh application host: its own folders, ports and PM2 daemon (stop it with stop_app_host)."""
    from ubertruck_ops.sandbox.app import SERVICES

    # PM2's sockets live in PM2_HOME and a unix socket path must stay short: not under pytest's tmp_path.
    base = Path(tempfile.mkdtemp(prefix="ut-host-"))
    ports: set[int] = set()
    while len(ports) < len(SERVICES):
        ports.add(free_port())
    return AppHost(app_root=str(base / "app"), repo_url=str(repository),
                   services=dict(zip(SERVICES, sorted(ports), strict=True)),
                   web_root=str(base / "www" / "html"), log_dir=None, pm2_home=str(base / "pm2"),
                   pm2_command=pm2_path, nginx_reload_command=f"touch {base / 'nginx-reloaded'}",
                   health_timeout_seconds=8, deploy_lock_wait_seconds=300)


def stop_app_host(app: AppHost) -> None:
    from ubertruck_ops.tasks import pm2

    pm2.kill_daemon(app)
    shutil.rmtree(Path(app.app_root).parent, ignore_errors=True)


def cli_env(api: str | None, home: Path) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_CLI_PROMPT": "false"}
    env.pop("PREFECT_API_URL", None)
    if api:
        env["PREFECT_API_URL"] = api
    return env


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
    """Send `sig` to a process a test started and wait up to `timeout` seconds for it to exit; SIGKILL
    what is left after that (the process and its process group, when it leads one), so a test that
    fails never leaves a server running for the rest of the suite. Return the exit status it chose
    itself, or None when it had to be killed (a test that asserts a clean stop then fails)."""
    if process is None:
        return None
    if process.poll() is not None:
        return process.returncode
    try:
        process.send_signal(sig)
        return process.wait(timeout=timeout)
    except ProcessLookupError:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        kill_process(process)
        return None


def kill_process(process: subprocess.Popen | None) -> None:
    """SIGKILL a process a test started (and its process group when it leads one), and reap it."""
    if process is None or process.poll() is not None:
        return
    # It may exit between the poll and the signal: then there is nothing left to kill.
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pid {process.pid} is still there 10 s after SIGKILL (stuck in the kernel?)", pytrace=False)

