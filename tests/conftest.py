"""Real parts for the tests: PostgreSQL 18 (wheel) and 15 (Debian), moto's S3 server over
HTTP behind a proxy that can misbehave, a local Slack webhook receiver, a Prefect API.

A missing part fails the test with the command that installs it; nothing skips.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ubertruck-test-prefect-"))
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
os.environ.setdefault("UBERTRUCK_STATE_DIR", tempfile.mkdtemp(prefix="ubertruck-test-state-"))

import boto3  # noqa: E402
import psycopg  # noqa: E402
import pytest  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from ubertruck_ops.blocks.app import AppHost  # noqa: E402
from ubertruck_ops.blocks.archive import ArchiveSources  # noqa: E402
from ubertruck_ops.blocks.database import PostgresDatabase  # noqa: E402
from ubertruck_ops.blocks.encryption import BackupEncryption  # noqa: E402
from ubertruck_ops.blocks.environment import Environment, save_environment  # noqa: E402
from ubertruck_ops.blocks.repository import BackupRepository  # noqa: E402
from ubertruck_ops.blocks.slack import SlackNotices  # noqa: E402
from ubertruck_ops.deployments.serve import wait_for_api  # noqa: E402
from ubertruck_ops.sandbox import data  # noqa: E402
from ubertruck_ops.tasks.postgres import client_bin_dir  # noqa: E402
from ubertruck_ops.tasks.scratch_postgres import LocalServer, free_port  # noqa: E402

from tests.parts import FaultyProxy, SlackReceiver  # noqa: E402

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


def require(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def prefect_api():
    """One Prefect API for the session, without per-run heartbeats, with the project's limits."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from ubertruck_ops.deployments.setup import ensure_concurrency_limits

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            ensure_concurrency_limits()
            yield


@pytest.fixture(scope="session")
def pg18():
    require(shutil.which("gpg") is not None, "gpg is missing: apt-get install -y gnupg")
    require(shutil.which("zstd") is not None, "zstd is missing: apt-get install -y zstd")
    server = LocalServer(client_bin_dir()).start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def pg15():
    require((PG15_BIN / "postgres").exists(),
            "PostgreSQL 15 server binaries are missing: apt-get install -y postgresql-15")
    server = LocalServer(PG15_BIN).start()
    yield server
    server.destroy()


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


@pytest.fixture
def source_db(pg18) -> PostgresDatabase:
    return make_database(pg18)


@pytest.fixture
def app_tree(tmp_path) -> Path:
    root = tmp_path / "app"
    (root / "current" / "user-service" / "dist").mkdir(parents=True)
    (root / "current" / "user-service" / "dist" / "main.js").write_text("console.log('user-service v1.0.0')\n")
    (root / "current" / "user-service" / "node_modules" / "dep").mkdir(parents=True)
    (root / "current" / "user-service" / "node_modules" / "dep" / "index.js").write_text("junk\n")
    (root / "shared").mkdir()
    (root / "shared" / ".env.production").write_text("NODE_ENV=production\n")
    return root


@pytest.fixture
def local_repo(tmp_path) -> Path:
    path = tmp_path / "repository"
    path.mkdir()
    return path


def new_env_name() -> str:
    return f"t-{secrets.token_hex(4)}"


def save_env(db: PostgresDatabase, repo: BackupRepository, *, app_root: Path | None = None,
             passphrase: str | None = None, encryption: BackupEncryption | None = None,
             slack_url: str | None = None, drill: PostgresDatabase | None = None, name: str | None = None,
             app: AppHost | None = None, ping_url: str | None = None) -> str:
    """Save a test environment's blocks; return its name."""
    name = name or new_env_name()
    env = Environment(
        database=db,
        encryption=encryption or BackupEncryption(passphrase=SecretStr(passphrase or secrets.token_urlsafe(24))),
        repository=repo,
        slack=SlackNotices(webhook_url=SecretStr(slack_url) if slack_url else None, timeout_seconds=3,
                           ping_url=SecretStr(ping_url) if ping_url else None),
        archive=ArchiveSources(app_root=str(app_root) if app_root else None,
                               config_files=[str(app_root / "shared" / ".env.production")] if app_root else []),
        drill_database=drill, app=app)
    save_environment(env, name)
    return name


@pytest.fixture
def slack():
    receiver = SlackReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_proxy(moto_server):
    proxy = FaultyProxy(moto_server).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def s3_client(moto_server):
    return boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="test", aws_secret_access_key="test",
                        region_name="ap-south-1")


def s3_repository(endpoint: str, s3_client, secret_key: str = "test", part_mib: int = 5) -> BackupRepository:
    """Create a fresh bucket and return a repository block on it through `endpoint`."""
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    bucket = f"ubertruck-{secrets.token_hex(4)}"
    s3_client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-south-1"})
    credentials = AwsCredentials(aws_access_key_id="AKIATESTKEY", aws_secret_access_key=SecretStr(secret_key),
                                 region_name="ap-south-1",
                                 aws_client_parameters=AwsClientParameters(endpoint_url=endpoint))
    return BackupRepository(url=f"s3://{bucket}/backups", s3_bucket=S3Bucket(bucket_name=bucket, credentials=credentials),
                            part_size_mib=part_mib)


@pytest.fixture(scope="session")
def pm2_path() -> str:
    require(shutil.which("node") is not None and shutil.which("npm") is not None,
            "Node.js and npm are missing: apt-get install -y nodejs npm")
    from ubertruck_ops.sandbox.app import project_pm2

    found = project_pm2()
    require(found is not None, "pm2 is missing: run ./ops test (it installs pm2 into .tools/) or npm install -g pm2@7")
    return found


@pytest.fixture(scope="session")
def app_repository(tmp_path_factory) -> Path:
    from ubertruck_ops.sandbox.app import create_app_repository

    return create_app_repository(tmp_path_factory.mktemp("app-repo") / "ubertruck.git")


def make_app_host(pm2_path: str, repository: Path) -> AppHost:
    """A fresh application host: its own folders, ports and PM2 daemon (stop it with stop_app_host)."""
    from ubertruck_ops.sandbox.app import SERVICES

    # PM2's sockets live in PM2_HOME and a unix socket path must stay short: not under pytest's tmp_path.
    base = Path(tempfile.mkdtemp(prefix="ut-host-"))
    ports: set[int] = set()
    while len(ports) < len(SERVICES):
        ports.add(free_port())
    return AppHost(app_root=str(base / "app"), repo_url=str(repository), services=dict(zip(SERVICES, sorted(ports))),
                   web_root=str(base / "www" / "html"), log_dir=None, pm2_home=str(base / "pm2"),
                   pm2_command=pm2_path, nginx_reload_command=f"touch {base / 'nginx-reloaded'}",
                   health_timeout_seconds=8, deploy_lock_wait_seconds=300)


def stop_app_host(app: AppHost) -> None:
    from ubertruck_ops.tasks import pm2

    pm2.kill_daemon(app)
    shutil.rmtree(Path(app.app_root).parent, ignore_errors=True)


@pytest.fixture
def app_host(pm2_path, app_repository):
    app = make_app_host(pm2_path, app_repository)
    cleanup = app.model_copy()     # tests may break app's pm2 command on purpose
    yield app
    stop_app_host(cleanup)


def cli_env(api: str | None, home: Path) -> dict:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_CLI_PROMPT": "false"}
    env.pop("PREFECT_API_URL", None)
    if api:
        env["PREFECT_API_URL"] = api
    return env


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` (SQLite) for the tests of schedules, workers and rolling deploys."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = open(home / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)],
                              # as serve starts its server: the UI and the automations' run links know its port
                              env={**cli_env(None, home), "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
                                   "PREFECT_SERVER_UI_API_URL": api}, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_api(api, server, 180)
        yield {"api": api, "home": home}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
