"""Rolling deploys over three app hosts on this machine (each its own APP_ROOT, PM2_HOME, ports and
process worker on its own work queue) against a real `prefect server start`: the host steps run
on the hosts' own workers, as subflows of the deploy.

The full rolling scenario (deploy v1.1.0 to three hosts, migrations once; v1.2.0 crashing on web-2
put back on web-1 and web-2 with zero failed requests, web-3 untouched) passed by hand twice (10-11
min on this loaded 2-core machine: each host step is a fresh flow-run process); it is not in the
default suite, which is at its 25-minute budget, until host steps start faster."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.tasks import health, release

from tests.conftest import cli_env, make_app_host, make_database, save_env, stop_app_host

PROJECT = Path(__file__).resolve().parents[1]
HOSTS = ("web-1", "web-2", "web-3")


def versions(app) -> set:
    return {health.probe(name, port).version for name, port in app.services.items()}


def _crashing_on_web2_repository(path: Path) -> Path:
    """The app's repository as web-2 sees it: v1.2.0's booking-service crashes on start there (a
    release that fails its health gate on the second host only)."""
    from ubertruck_ops.sandbox import app as sample

    releases = tuple(dataclasses.replace(r, faults={"booking-service": sample.CRASH}) if r.tag == "v1.2.0" else r
                     for r in sample.RELEASES)
    original, sample.RELEASES = sample.RELEASES, releases
    try:
        return sample.create_app_repository(path)
    finally:
        sample.RELEASES = original


@pytest.fixture(scope="module")
def fleet(prefect_server, pg18, pm2_path, app_repository, tmp_path_factory):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.deployments.schedules import APP_HOST_QUEUE, WORK_POOL
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits, ensure_host_queues
    from ubertruck_ops.flows.host_release import host_release

    api, home = prefect_server["api"], prefect_server["home"]
    web2_repo = _crashing_on_web2_repository(tmp_path_factory.mktemp("web-2-repo") / "ubertruck.git")
    apps = {h: make_app_host(pm2_path, web2_repo if h == "web-2" else app_repository) for h in HOSTS}
    workers, logs = [], []
    with temporary_settings({PREFECT_API_URL: api}):
        ensure_concurrency_limits()
        db = make_database(pg18, size_mb=2)
        env = save_env(db, BackupRepository(url=str(tmp_path_factory.mktemp("rolling-repo"))), app=apps["web-1"])
        for host, app in apps.items():
            app.save(block_name(env, f"app-{host}"), overwrite=True)
        AppFleet(hosts=list(HOSTS), worker_seen_seconds=60).save(block_name(env, "fleet"), overwrite=True)
        ensure_host_queues(list(HOSTS))        # as blocks init does with APP_HOSTS
        with get_client(sync_client=True) as client:
            flow_id = client.create_flow_from_name("host-release")
            client.create_deployment(flow_id=flow_id, name=env, work_pool_name=WORK_POOL,
                                     work_queue_name=APP_HOST_QUEUE, path=str(PROJECT),
                                     entrypoint="ubertruck_ops/flows/host_release.py:host_release",
                                     parameter_openapi_schema=host_release.parameters.model_dump(),
                                     enforce_parameter_schema=True)
        for host in HOSTS:
            log = open(home / f"worker-{host}.log", "wb")
            logs.append(log)
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--work-queue",
                 f"app-host-{host}", "--type", "process", "--name", f"worker-{host}"],
                cwd=PROJECT, env=cli_env(api, home), stdout=log, stderr=subprocess.STDOUT))
        try:
            _wait_for_workers(api)
            yield {"env": env, "apps": apps, "db": db, "api": api}
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGINT)
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            for log in logs:
                log.close()
            for app in apps.values():
                stop_app_host(app)


def _wait_for_workers(api: str, timeout: float = 120) -> None:
    from ubertruck_ops.tasks.workers import last_polled

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(last_polled("ubertruck-ops", {h: f"app-host-{h}" for h in HOSTS}).values()):
            return
        time.sleep(1)
    raise AssertionError("the three hosts' workers did not poll their queues")


def test_a_host_whose_worker_is_down_refuses_the_deploy_by_name_before_anything_changes(fleet):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.flows.deploy import deploy

    env, apps = fleet["env"], fleet["apps"]
    live = {h: release.live_release(app) for h, app in apps.items()}
    with temporary_settings({PREFECT_API_URL: fleet["api"]}):
        AppFleet(hosts=[*HOSTS, "web-4"]).save(block_name(env, "fleet"), overwrite=True)
        try:
            refused = deploy(tag="v1.2.1", environment=env, return_state=True)
        finally:
            AppFleet(hosts=list(HOSTS), worker_seen_seconds=60).save(block_name(env, "fleet"), overwrite=True)
    assert refused.is_failed() and "web-4" in str(refused.message) and "skip_hosts=['web-4']" in str(refused.message)
    assert {h: release.live_release(app) for h, app in apps.items()} == live
    assert not any(release.is_complete(app, "v1.2.1") for app in apps.values())
