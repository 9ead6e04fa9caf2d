"""Rolling deploys over three app hosts on this machine (each its own APP_ROOT, PM2_HOME, ports and
process worker on its own work queue) against a real `prefect server start`, behind Debian's nginx
(one upstream per service over the three hosts) with clients sending requests through it: the host
steps run on the hosts' own workers, as subflows of the deploy.

One module fixture carries the hosts through the story (each test starts where the one before
left them): v1.0.0 everywhere; a rolling deploy of v1.1.0 under load; v1.2.0, which crashes on
web-2, put back on web-1 and web-2 with web-3 untouched; a rolling rollback in batches of two; a
host whose worker is down refusing the deploy."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.tasks import health, release

from tests.conftest import cli_env, make_app_host, make_database, require, save_env, stop_app_host
from tests.parts import LoadGenerator, NginxBalancer, SlackReceiver

PROJECT = Path(__file__).resolve().parents[1]
HOSTS = ("web-1", "web-2", "web-3")


def versions(app) -> set:
    return {health.probe(name, port).version for name, port in app.services.items()}


def _crashing_on_web2_repository(app_repository: Path, path: Path) -> Path:
    """The app's repository as web-2 sees it: the same commits, except that its v1.2.0 carries
    v1.3.0's booking-service, which crashes on start (a release that fails its health gate on the
    second host only)."""
    from ubertruck_ops.tasks.execute import run

    run(["git", "clone", "-q", "--bare", str(app_repository), str(path)])
    work = path.parent / "work"
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "commit.gpgsign=false",
           "-c", "tag.gpgsign=false"]
    run(["git", "clone", "-q", str(path), str(work)])
    run([*git, "checkout", "-q", "v1.2.0"])
    run([*git, "checkout", "v1.3.0", "--", "booking-service/src"])
    run([*git, "commit", "-q", "-m", "v1.2.0 as web-2 sees it: booking-service crashes"])
    run([*git, "tag", "-f", "-a", "v1.2.0", "-m", "crashes on web-2"])
    run([*git, "push", "-q", "-f", "origin", "refs/tags/v1.2.0"])
    return path


def _prebuild(apps: dict) -> None:
    """Build v1.0.0-v1.2.0 once per distinct commit and copy the builds to the other hosts (the
    suite's time: nine npm builds through the host steps cost minutes here). The deploys still run
    every host's build step; it finds the build of the same commit and reuses it."""
    from ubertruck_ops.operations.release_build import build_release
    from ubertruck_ops.tasks import git

    built: dict[tuple[str, str], Path] = {}
    for host, app in apps.items():
        release.prepare_host(app)
        tags = git.remote_tags(app.repo_url)
        for tag in ("v1.0.0", "v1.1.0", "v1.2.0"):
            source = built.get((tag, tags[tag]))
            if source is None:
                build_release(app, tag, tags[tag])
                built[(tag, tags[tag])] = release.release_dir(app, tag)
            else:
                shutil.copytree(source, release.release_dir(app, tag), symlinks=True)
            assert release.release_info(app, tag)["commit"] == tags[tag]


@pytest.fixture(scope="module")
def fleet(prefect_server, pg18, pm2_path, app_repository, tmp_path_factory):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.deployments.schedules import APP_HOST_QUEUE, WORK_POOL
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits, ensure_host_queues
    from ubertruck_ops.flows.host_release import host_release

    api, home = prefect_server["api"], prefect_server["home"]
    web2_repo = _crashing_on_web2_repository(app_repository, tmp_path_factory.mktemp("web-2-repo") / "ubertruck.git")
    apps = {h: make_app_host(pm2_path, web2_repo if h == "web-2" else app_repository) for h in HOSTS}
    _prebuild(apps)
    upstreams = {service: {h: f"127.0.0.1:{app.services[service]}" for h, app in apps.items()}
                 for service in apps["web-1"].services}
    try:
        balancer = NginxBalancer(tmp_path_factory.mktemp("nginx"), upstreams)
    except RuntimeError as missing:
        require(False, str(missing))
    slack = SlackReceiver().start()
    workers, logs = [], []
    with temporary_settings({PREFECT_API_URL: api}):
        ensure_concurrency_limits()
        db = make_database(pg18, size_mb=2)
        env = save_env(db, BackupRepository(url=str(tmp_path_factory.mktemp("rolling-repo"))), app=apps["web-1"],
                       slack_url=slack.webhook())
        for host, app in apps.items():
            app.save(block_name(env, f"app-{host}"), overwrite=True)
        ensure_host_queues(list(HOSTS))        # as blocks init does with APP_HOSTS
        with get_client(sync_client=True) as client:
            flow_id = client.create_flow_from_name("host-release")
            client.create_deployment(flow_id=flow_id, name=env, work_pool_name=WORK_POOL,
                                     work_queue_name=APP_HOST_QUEUE,
                                     # as `prefect deploy` writes it: run in the project folder (a bare
                                     # path= makes every flow run copy the whole folder first, ~25 s here)
                                     pull_steps=[{"prefect.deployments.steps.set_working_directory":
                                                  {"directory": str(PROJECT)}}],
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
            # v1.0.0 live on every host: the go-live host step, run here rather than on the workers
            for host in HOSTS:
                host_release(environment=env, host=host, step="go-live", tag="v1.0.0", run_id="setup")
            AppFleet(hosts=list(HOSTS), worker_seen_seconds=60).save(block_name(env, "fleet"), overwrite=True)
            _wait_for_workers(api)
            balancer.start()
            checks = [f"http://127.0.0.1:{port}/health" for port in balancer.ports.values()]
            balancer.block.model_copy(update={"check_urls": checks}).save(block_name(env, "load-balancer"),
                                                                          overwrite=True)
            yield {"env": env, "apps": apps, "db": db, "api": api, "balancer": balancer, "slack": slack}
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
            balancer.stop()
            slack.stop()
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


def _through_nginx(fleet) -> LoadGenerator:
    """Clients sending requests without pause to every service through the balancer."""
    return LoadGenerator(list(fleet["balancer"].ports.values()), threads=2)


def _all_in(fleet) -> bool:
    from ubertruck_ops.tasks import load_balancer

    return set(load_balancer.state(fleet["balancer"].block)["hosts"].values()) == {"in"}


@pytest.mark.timeout(600)
def test_a_rolling_deploy_through_nginx_switches_every_host_migrates_once_and_drops_no_request(fleet):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.flows.deploy import deploy

    env, apps = fleet["env"], fleet["apps"]
    with temporary_settings({PREFECT_API_URL: fleet["api"]}):
        with _through_nginx(fleet) as load:
            done = deploy(tag="v1.1.0", environment=env)
    assert load.failures == [] and load.ok > 100, (load.ok, load.failures[:5])
    assert done["hosts"] == list(HOSTS) and all(versions(app) == {"v1.1.0"} for app in apps.values())
    assert {"v1.0.0", "v1.1.0"} <= set().union(*load.versions.values())    # the clients saw the switch
    with psycopg.connect(**fleet["db"].connect_kwargs()) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert applied == ["001_feature_flags.sql", "002_feature_flag_notes.sql"]   # once, from the first host
    assert _all_in(fleet)


@pytest.mark.timeout(600)
def test_a_release_failing_on_the_second_host_is_put_back_on_both_and_never_reaches_the_third(fleet):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.flows.deploy import deploy

    env, apps, slack = fleet["env"], fleet["apps"], fleet["slack"]
    with temporary_settings({PREFECT_API_URL: fleet["api"]}):
        with _through_nginx(fleet) as load:
            failed = deploy(tag="v1.2.0", environment=env, return_state=True)   # crashes on web-2 only
    assert failed.is_failed() and "web-2" in str(failed.message)
    assert load.failures == [], load.failures[:5]
    assert all(versions(app) == {"v1.1.0"} for app in apps.values())
    assert [e.action for e in release.read_history(apps["web-1"])[-1:]] == ["put-back"]
    assert [e.action for e in release.read_history(apps["web-2"])[-1:]] == ["auto-rollback"]
    assert not any(e.to_release == "v1.2.0" for e in release.read_history(apps["web-3"]))     # never touched
    assert _all_in(fleet)
    notice = next(p["blocks"][0]["text"]["text"] for p in reversed(slack.posts) if "FAILED" in p["text"])
    assert "web-1: put back" in notice and "web-2: its own step failed; it put itself back" in notice, notice
    assert "never touched: web-3" in notice and "every host is back in the load balancer" in notice, notice


@pytest.mark.timeout(600)
def test_a_rolling_rollback_puts_every_host_on_its_previous_release_without_dropping_a_request(fleet):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.flows.rollback import rollback

    env, apps = fleet["env"], fleet["apps"]
    with temporary_settings({PREFECT_API_URL: fleet["api"]}):
        AppFleet(hosts=list(HOSTS), hosts_at_once=2, worker_seen_seconds=60).save(block_name(env, "fleet"),
                                                                                  overwrite=True)
        try:
            with _through_nginx(fleet) as load:
                done = rollback(environment=env)      # web-1 and web-2 together, then web-3
        finally:
            AppFleet(hosts=list(HOSTS), worker_seen_seconds=60).save(block_name(env, "fleet"), overwrite=True)
    assert load.failures == [] and load.ok > 50, (load.ok, load.failures[:5])
    assert done["hosts"] == list(HOSTS) and all(versions(app) == {"v1.0.0"} for app in apps.values())
    assert _all_in(fleet)


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
