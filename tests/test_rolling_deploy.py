"""Rolling deploys over three app hosts on this machine (each its own APP_ROOT, PM2_HOME, ports and
process worker on its own work queue) against a real `prefect server start`, behind Debian's nginx
(one upstream per service over the three hosts) with clients sending requests through it: the host
steps run on the hosts' own workers, as subflows of the deploy.

One module fixture carries the hosts through the story (each test starts where the one before
left them): v1.0.0 everywhere; a rolling deploy of v1.1.0 under load; v1.2.0, which crashes on
web-2, put back on web-1 and web-2 with web-3 untouched; a rolling rollback in batches of two; a
host whose worker is down refusing the deploy; a take-out whose nginx drain times out (the host back
in nginx); a go-live whose worker went away, cancelled, and the worker back late switching nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

import psycopg
import pytest

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.tasks import health, release

from tests.helpers import cli_env, make_app_host, make_database, require, save_env, stop_app_host
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


def _prebuild(apps: dict, builds) -> None:
    """Put complete builds of v1.0.0-v1.2.0 on every host, each commit built once per test run
    (tests/parts/release_builds.py: twelve npm builds through the host steps cost minutes here). The
    deploys still run every host's build step; it finds the build of the same commit and reuses it."""
    from ubertruck_ops.operations.release_build import build_release
    from ubertruck_ops.tasks import git

    for app in apps.values():
        release.prepare_host(app)
        tags = git.remote_tags(app.repo_url)
        for tag in ("v1.0.0", "v1.1.0", "v1.2.0"):
            builds.build_release(build_release, app, tag, tags[tag])
            assert release.release_info(app, tag)["commit"] == tags[tag]


@pytest.fixture(scope="module")
def fleet(prefect_server, pg18, pm2_path, app_repository, shared_release_builds, tmp_path_factory):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.deployments.schedules import APP_HOST_QUEUE, WORK_POOL
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits, ensure_host_queues
    from ubertruck_ops.flows.host_release import host_release

    api, home = prefect_server["api"], prefect_server["home"]
    web2_repo = _crashing_on_web2_repository(app_repository, tmp_path_factory.mktemp("web-2-repo") / "ubertruck.git")
    apps = {h: make_app_host(pm2_path, web2_repo if h == "web-2" else app_repository) for h in HOSTS}
    _prebuild(apps, shared_release_builds)
    upstreams = {service: {h: f"127.0.0.1:{app.services[service]}" for h, app in apps.items()}
                 for service in apps["web-1"].services}
    try:
        balancer = NginxBalancer(tmp_path_factory.mktemp("nginx"), upstreams)
    except RuntimeError as missing:
        require(False, str(missing))
    slack = SlackReceiver().start()
    logs = []
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
        workers: dict[str, subprocess.Popen] = {}

        def start_worker(host: str) -> None:
            log = open(home / f"worker-{host}.log", "ab")
            logs.append(log)
            workers[host] = subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--work-queue",
                 f"app-host-{host}", "--type", "process", "--name", f"worker-{host}"],
                cwd=PROJECT, env=cli_env(api, home), stdout=log, stderr=subprocess.STDOUT)

        def stop_worker(host: str) -> None:
            worker = workers.pop(host)
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)

        for host in HOSTS:
            start_worker(host)
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
            yield {"env": env, "apps": apps, "db": db, "api": api, "balancer": balancer, "slack": slack,
                   "start_worker": start_worker, "stop_worker": stop_worker}
        finally:
            for worker in workers.values():
                worker.send_signal(signal.SIGINT)
            for worker in workers.values():
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
    histories = {h: release.read_history(app) for h, app in apps.items()}
    failed_run = next(e.flow_run for e in reversed(histories["web-1"]) if e.action == "put-back")
    with temporary_settings({PREFECT_API_URL: fleet["api"]}):
        AppFleet(hosts=list(HOSTS), hosts_at_once=2, worker_seen_seconds=60).save(block_name(env, "fleet"),
                                                                                  overwrite=True)
        try:
            # Right after the deploy of v1.2.0 that failed on web-2: each host goes back to what it ran
            # before that deploy - web-1 and web-2 were put back, web-3 never reached - not further.
            undone = rollback(environment=env)
            assert undone["undid"] == failed_run, undone
            assert all(versions(app) == {"v1.1.0"} for app in apps.values())
            assert {h: release.read_history(app) for h, app in apps.items()} == histories, "a host was switched"
            with _through_nginx(fleet) as load:
                done = rollback(environment=env)      # web-1 and web-2 together, then web-3
        finally:
            AppFleet(hosts=list(HOSTS), worker_seen_seconds=60).save(block_name(env, "fleet"), overwrite=True)
    assert load.failures == [] and load.ok > 50, (load.ok, load.failures[:5])
    assert done["undid"] is None
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


def _pids_through(port: int, requests: int) -> set[int]:
    import httpx

    with httpx.Client(timeout=5) as client:
        return {client.get(f"http://127.0.0.1:{port}/health").json()["pid"] for _ in range(requests)}


def _last_failure_notice(slack) -> str:
    return next(p["text"] + "\n" + p["blocks"][0]["text"]["text"] for p in reversed(slack.posts)
                if "FAILED" in p["text"])


@pytest.mark.timeout(300)
def test_a_take_out_whose_drain_times_out_puts_the_host_back_into_nginx_and_the_notice_says_what_was_done(fleet):
    """nginx's take-out writes `down` and reloads before it waits for the old workers to drain: when
    the drain times out (a slow upload holds an old worker), the host is already out, and must be
    put back; the notice names what happened, not an unconditional "every host is back"."""
    import socket

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.blocks.load_balancer import LoadBalancer
    from ubertruck_ops.flows.rollback import rollback

    env, apps, balancer, slack = fleet["env"], fleet["apps"], fleet["balancer"], fleet["slack"]
    live = {h: release.live_release(app) for h, app in apps.items()}
    name = block_name(env, "load-balancer")
    with temporary_settings({PREFECT_API_URL: fleet["api"]}):
        saved = LoadBalancer.load(name)
        saved.model_copy(update={"drain_timeout_seconds": 2}).save(name, overwrite=True)
        slow = socket.create_connection(("127.0.0.1", balancer.ports["user-service"]))
        # an upload still coming in: the worker holding it stays until it ends
        slow.sendall(b"POST /api/uploads HTTP/1.1\r\nHost: ubertruck\r\nContent-Length: 100000\r\n\r\nfirst bytes")
        try:
            failed = rollback(environment=env, return_state=True)
        finally:
            slow.close()
            saved.save(name, overwrite=True)
    assert failed.is_failed() and "still hold connections after 2 s" in str(failed.message), failed.message
    # what nginx runs: no host down in its upstreams, and web-1's own processes answer through it again
    assert " down;" not in (balancer.prefix / "upstreams.conf").read_text()
    assert _all_in(fleet)
    web1 = _pids_through(apps["web-1"].services["user-service"], 20)
    assert web1 & _pids_through(balancer.ports["user-service"], 60), "nginx sends nothing to web-1"
    assert {h: release.live_release(app) for h, app in apps.items()} == live
    notice = _last_failure_notice(slack)
    assert "FAILED at step 'take web-1 out of the load balancer'" in notice, notice
    assert "no host had been switched" in notice and "never touched: web-2, web-3" in notice, notice
    assert "every host is back in the load balancer (put back: web-1)" in notice, notice


STEP_TIMEOUT = 180    # a host step's start and a reused build on a loaded 2-core machine, with room
WORKER_SEEN = 20      # the test's workers poll every second: 20 s without a poll means the worker is gone


def _runs_named(name: str, since):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    return [r for r in runs if r.created and r.created >= since]


def _final_state(run_id, seconds: float):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run_id).state
            if state.is_final() or time.monotonic() > deadline:
                return state
            time.sleep(1)


@pytest.mark.timeout(900)
def test_a_host_step_the_deploy_gave_up_on_is_cancelled_and_a_worker_back_late_switches_nothing(fleet):
    """web-2's worker is gone when its go-live is due: the deploy gives the step up once the worker has
    not polled for worker_seen_seconds (not after the whole step timeout), cancels it, puts web-1 back
    and ends Failed. The worker comes back afterwards: the cancelled go-live never runs, and a step
    whose cancel never reached it refuses as expired. web-2 keeps what it ran."""
    import contextvars
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timedelta

    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.flows.deploy import deploy
    from ubertruck_ops.operations.release_build import build_release
    from ubertruck_ops.tasks import git

    env, apps, slack = fleet["env"], fleet["apps"], fleet["slack"]
    live = {h: release.live_release(app) for h, app in apps.items()}
    assert set(live.values()) == {"v1.0.0"}
    web2_history = release.read_history(apps["web-2"])
    # v1.1.0 is built on every host beforehand, so the deploy's builds are reuses that finish well
    # within the short step timeout even on a loaded machine: the step that must time out is go-live.
    commit = git.remote_tags(apps["web-1"].repo_url)["v1.1.0"]
    with ThreadPoolExecutor(max_workers=len(apps)) as pool:
        list(pool.map(lambda app: build_release(app, "v1.1.0", commit), apps.values()))
    started = datetime.now(UTC)
    stopped: list[str] = []

    poll_errors: list[str] = []
    deploy_ended = threading.Event()

    def stop_web2_once_built() -> None:
        # web-2 builds with the others, then its worker goes away before its go-live is due
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not deploy_ended.is_set():
            try:
                built = any(r.state.is_completed() for r in _runs_named("build on web-2", started))
            except Exception as exc:    # a slow API answer on a loaded machine: ask again
                poll_errors.append(repr(exc))
                built = False
            if built:
                fleet["stop_worker"]("web-2")
                stopped.append("web-2")
                return
            time.sleep(0.5)

    with temporary_settings({PREFECT_API_URL: fleet["api"]}):
        AppFleet(hosts=list(HOSTS), worker_seen_seconds=WORKER_SEEN, host_run_timeout_seconds=STEP_TIMEOUT).save(
            block_name(env, "fleet"), overwrite=True)
        stopper = threading.Thread(target=contextvars.copy_context().run, args=(stop_web2_once_built,))
        stopper.start()
        try:
            failed = deploy(tag="v1.1.0", environment=env, return_state=True)
        finally:
            deploy_ended.set()
            stopper.join()
            AppFleet(hosts=list(HOSTS), worker_seen_seconds=60).save(block_name(env, "fleet"), overwrite=True)
        assert stopped == ["web-2"], (f"web-2's build never completed; the deploy: {failed.message}; "
                                      f"polling errors: {poll_errors[-3:]}")
        assert failed.is_failed(), failed.message
        [given_up] = _runs_named("go-live on web-2", started)
        notice = _last_failure_notice(slack)

        fleet["start_worker"]("web-2")          # the worker comes back after the deploy ended
        assert _final_state(given_up.id, 90).type.value == "CANCELLED"
        assert release.live_release(apps["web-2"]) == "v1.0.0", "the late worker put the failed deploy's release live"
        assert "go-live on web-2 was never started: its worker last polled" in str(failed.message), failed.message
        assert f"(worker_seen_seconds {WORKER_SEEN} s)" in str(failed.message), failed.message
        gave_up = (given_up.state.timestamp if given_up.state else datetime.now(UTC)) - given_up.created
        assert gave_up.total_seconds() < STEP_TIMEOUT, f"the deploy waited {gave_up} for a worker that was gone"
        assert "cancelled before it started: nothing changed on web-2" in str(failed.message), failed.message
        # A step the cancel did not reach (the deploy's process was killed, say): its deadline has passed.
        late = run_deployment(f"host-release/{env}", work_queue_name="app-host-web-2", timeout=0,
                              parameters={"environment": env, "host": "web-2", "step": "go-live", "tag": "v1.1.0",
                                          "run_id": "a deploy that died",
                                          "not_after": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()})
        refused = _final_state(late.id, 180)
        assert refused.type.value == "FAILED" and "refused" in str(refused.message), refused
        assert _final_state(given_up.id, 1).type.value == "CANCELLED"
    assert {h: release.live_release(app) for h, app in apps.items()} == live
    assert all(versions(app) == {"v1.0.0"} for app in apps.values())
    assert release.read_history(apps["web-2"]) == web2_history, "a late step changed web-2"
    assert _all_in(fleet)
    assert "web-2: its go-live was cancelled before it started; unchanged" in notice, notice
    assert "web-1: put back" in notice and "never touched: web-3" in notice, notice
    assert "every host is back in the load balancer (put back: web-2)" in notice, notice
