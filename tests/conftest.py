"""Real parts for the tests: PostgreSQL 18 (wheel) and 15 (Debian), moto's S3 server over
HTTP behind a proxy that can misbehave, a local Slack webhook receiver, a Prefect API.

Fixtures only; the helpers tests import live in tests/helpers.py. The suite runs in parallel
(pytest-xdist, `./ops test`): every worker is its own process with its own PREFECT_HOME, state
folder, TMPDIR, session servers and ports, so workers share nothing but the machine.
A missing part fails the test with the command that installs it; nothing skips.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    # Workers inherit the controller's environment, so its PREFECT_HOME and state folder would be
    # shared: each worker gets its own, inside a TMPDIR of its own (scratch servers, GnuPG homes,
    # leftover sweeps and the drill tests' checks then see only this worker's folders). 0711: the
    # scratch PostgreSQL runs as its own user under root and must pass through to its folder.
    _TMP = Path(tempfile.mkdtemp(prefix=f"ut-{_WORKER}-"))
    _TMP.chmod(0o711)
    os.environ["TMPDIR"] = str(_TMP)
    tempfile.tempdir = None                 # recomputed from TMPDIR on next use
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="ubertruck-test-prefect-")
    os.environ["UBERTRUCK_STATE_DIR"] = tempfile.mkdtemp(prefix="ubertruck-test-state-")
    atexit.register(shutil.rmtree, _TMP, True)
else:
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ubertruck-test-prefect-"))
    os.environ.setdefault("UBERTRUCK_STATE_DIR", tempfile.mkdtemp(prefix="ubertruck-test-state-"))



def _one_ca_certificate() -> str:
    """A file holding one CA certificate of certifi's bundle, for PREFECT_API_SSL_CERT_FILE.

    Every Prefect client builds an SSL context from that file, used or not; with certifi's whole
    bundle that costs ~15 ms of CPU per client, and a run of the suite makes thousands of clients
    (about a fifth of a worker's CPU in a profile). Every Prefect API the tests start is plain
    http://127.0.0.1, where no certificate is ever checked, so one certificate does the same work."""
    import re

    import certifi

    bundle = Path(certifi.where()).read_text()
    first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", bundle, re.S)
    folder = Path(tempfile.mkdtemp(prefix="ut-ca-"))
    folder.chmod(0o711)             # processes of other users the tests start (postgres) read it too
    path = folder / "one-ca.pem"
    path.write_text(first.group(0))
    path.chmod(0o644)
    atexit.register(shutil.rmtree, folder, True)
    return str(path)


os.environ.setdefault("PREFECT_API_SSL_CERT_FILE", _one_ca_certificate())

import boto3  # noqa: E402
import pytest  # noqa: E402

from ubertruck_ops.blocks.database import PostgresDatabase  # noqa: E402
from ubertruck_ops.deployments.serve import wait_for_api  # noqa: E402
from ubertruck_ops.tasks.postgres import client_bin_dir  # noqa: E402
from ubertruck_ops.tasks.scratch_postgres import LocalServer, free_port  # noqa: E402

from tests.helpers import (  # noqa: E402
    PG15_BIN,
    cli_env,
    make_app_host,
    make_database,
    require,
    stop_app_host,
    stop_process,
)
from tests.parts import FaultyProxy, SlackReceiver  # noqa: E402
from tests.parts.release_builds import SharedReleaseBuilds  # noqa: E402

# Modules that take longest, slowest first (from `./ops test`'s --durations and module wall times):
# loadscope hands whole modules to workers in collection order, so the long ones start first and
# the short ones fill the gaps at the end instead of one long module finishing alone.
SLOW_MODULES = (   # by their measured time (junit, 2026-12-05), longest first: the tail of the run stays short
    "test_rolling_deploy", "test_wal_archive", "test_cli", "test_schedules", "test_deploy", "test_checklists",
    "test_incremental", "test_trust_api_identity", "test_drill", "test_trust_locks", "test_trust_clock",
    "test_trust_access", "test_faults", "test_demo_home", "test_s3", "test_wal_safety", "test_watch",
    "test_postgres15_chain", "test_backup_restore", "test_trust_backups", "test_block_standards", "test_rds",
    "test_alerts", "test_watch_supervision", "test_no_shell", "test_trust_restore", "test_trust_repository_paths",
    "test_load_balancer", "test_trust_servers", "test_database_url", "test_wal_push",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Run the slowest modules first (a stable sort: tests keep their order inside a module)."""
    rank = {name: index for index, name in enumerate(SLOW_MODULES)}

    def module_rank(item) -> int:
        return rank.get(Path(str(item.fspath)).stem, len(rank))

    items.sort(key=module_rank)


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
def shared_release_builds(tmp_path_factory) -> SharedReleaseBuilds:
    """The run's kept release builds (tests/parts/release_builds.py): in the folder every xdist
    worker's own temporary folder sits in, so a commit is built once per run, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    return SharedReleaseBuilds((base.parent if _WORKER else base) / "release-builds")


@pytest.fixture(autouse=True)
def release_builds_once_per_run(request, monkeypatch):
    """Deploys in this process reuse a kept build of the same commit, unless the test is about the
    build (marker `real_builds`) or UT_REAL_BUILDS=1 asks for real builds everywhere."""
    if request.node.get_closest_marker("real_builds") or os.environ.get("UT_REAL_BUILDS") == "1":
        yield None
        return
    from ubertruck_ops.operations import release_build

    builds = request.getfixturevalue("shared_release_builds")

    def build_release(app, tag, commit):
        return builds.build_release(release_build.build_release, app, tag, commit)

    for module in ("ubertruck_ops.flows.deploy", "ubertruck_ops.operations.host_steps"):
        __import__(module)
        monkeypatch.setattr(sys.modules[module], "build_release", build_release)
    yield builds


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


@pytest.fixture
def app_host(pm2_path, app_repository):
    app = make_app_host(pm2_path, app_repository)
    cleanup = app.model_copy()     # tests may break app's pm2 command on purpose
    yield app
    stop_app_host(cleanup)


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
        stop_process(server, timeout=30)
        log.close()
