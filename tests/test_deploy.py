"""Deploy and rollback on real PM2 and Node, with the sample application's releases."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.deploy import deploy
from ubertruck_ops.flows.rollback import rollback
from ubertruck_ops.tasks import health, release

from tests.helpers import make_database, save_env
from tests.parts import LoadGenerator


def versions(app) -> dict[str, str | None]:
    return {name: health.probe(name, port).version for name, port in app.services.items()}


def web_version(app) -> str:
    return json.loads((Path(app.web_root) / "version.json").read_text())["version"]


def test_deploy_migrate_upgrade_and_rollback_without_a_failed_request(pg18, app_host, local_repo, slack):
    app = app_host
    db = make_database(pg18, size_mb=2)
    env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook())

    # As `ubertruck-ops run` and a worker with UMask=0077 deploy; the host's folders sit under /opt (0755).
    Path(app.app_root).parent.chmod(0o755)
    previous_umask = os.umask(0o077)
    try:
        first = deploy(tag="v1.0.0", environment=env)
    finally:
        os.umask(previous_umask)
    assert first["status"] == "deployed" and first["migrations"] == ["001_feature_flags.sql"]
    # nginx (another user) reads the published frontend; the release's code stays private.
    served = subprocess.run(["cat", str(Path(app.web_root) / "version.json")], user="nobody", capture_output=True)
    assert served.returncode == 0 and b"v1.0.0" in served.stdout, served.stderr
    listing = subprocess.run(["ls", str(Path(app.app_root) / "releases" / "v1.0.0" / "user-service")], user="nobody",
                             capture_output=True)
    assert listing.returncode != 0
    assert first["backup_id"] and list(local_repo.glob(f"*/*/*/{first['backup_id']}/manifest.json"))
    assert set(versions(app).values()) == {"v1.0.0"}
    assert web_version(app) == "v1.0.0" and (Path(app.app_root).parent / "nginx-reloaded").exists()
    with psycopg.connect(**db.connect_kwargs()) as conn:
        assert conn.execute("SELECT to_regclass('core.feature_flags') IS NOT NULL").fetchone()[0]

    ports = list(app.services.values())
    with LoadGenerator(ports) as load:
        second = deploy(tag="v1.1.0", environment=env)
    assert second["status"] == "deployed" and second["migrations"] == ["002_feature_flag_notes.sql"]
    assert load.failures == [], load.failures[:5]
    assert load.ok > 100
    assert set(versions(app).values()) == {"v1.1.0"} and web_version(app) == "v1.1.0"
    assert release.live_release(app) == "v1.1.0"

    with LoadGenerator(ports) as load:
        back = rollback(environment=env)
    assert back["status"] == "rolled-back" and back["tag"] == "v1.0.0"
    assert load.failures == [], load.failures[:5]
    assert set(versions(app).values()) == {"v1.0.0"} and web_version(app) == "v1.0.0"

    again = deploy(tag="v1.0.0", environment=env)
    assert again["status"] == "already-live"
    texts = slack.texts()
    assert any("deploy of v1.1.0 succeeded" in t for t in texts)
    assert any("rolled back to v1.0.0" in t for t in texts)
    history = release.read_history(app)
    assert [(h.action, h.to_release, h.outcome) for h in history][-2:] == [
        ("rollback", "v1.0.0", "started"), ("rollback", "v1.0.0", "succeeded")]


def deployed(pg18, app, local_repo, slack, tag="v1.2.0") -> tuple[str, object]:
    db = make_database(pg18, size_mb=2)
    env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook())
    assert deploy(tag=tag, environment=env)["status"] == "deployed"
    return env, db


def _lock_seen_from_outside(app) -> dict:
    """What another process finds when it tries the host's deploy lock right now: the flock file
    (non-blocking) and the environment-wide slot in the Prefect API."""
    import sys

    from prefect.client.orchestration import get_client

    from ubertruck_ops.core.limits import DEPLOY_LOCK

    probe = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\ntry:\n"
             "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n    print('held')\n")
    flock = subprocess.run([sys.executable, "-c", probe, str(Path(app.shared_dir) / f"{DEPLOY_LOCK}.lock")],
                           capture_output=True, text=True, check=True).stdout.strip()
    with get_client(sync_client=True) as client:
        slots = client.read_global_concurrency_limit_by_name(DEPLOY_LOCK).active_slots
    return {"flock": flock, "slots": slots}


def test_releases_that_crash_or_never_get_ready_are_rolled_back_by_themselves(pg18, app_host, local_repo, slack,
                                                                              monkeypatch):
    from ubertruck_ops.operations import release_switch

    app = app_host
    env, _ = deployed(pg18, app, local_repo, slack)
    # The automatic rollback must run under the deploy's own lock: another deploy or rollback
    # starting between the failure and the put-back would switch the host twice at once.
    seen_during_put_back: list[dict] = []
    put_back = release_switch._put_back

    def observed_put_back(*args, **kwargs):
        seen_during_put_back.append(_lock_seen_from_outside(app))
        return put_back(*args, **kwargs)

    monkeypatch.setattr(release_switch, "_put_back", observed_put_back)
    for broken, service in [("v1.3.0", "booking-service"), ("v1.3.1", "payment-service")]:
        with LoadGenerator([app.services["user-service"]], threads=1) as load:
            state = deploy(tag=broken, environment=env, return_state=True)
        assert state.is_failed()
        assert service in state.message
        assert set(versions(app).values()) == {"v1.2.0"}, broken
        assert release.live_release(app) == "v1.2.0" and web_version(app) == "v1.2.0"
        assert any(f"deploy of {broken} ROLLED BACK" in t for t in slack.texts())
        assert load.failures == [], load.failures[:5]
        assert release.read_history(app)[-1].action == "auto-rollback"
        assert seen_during_put_back[-1] == {"flock": "held", "slots": 1}, seen_during_put_back
        assert _lock_seen_from_outside(app) == {"flock": "free", "slots": 0}, "the deploy kept its lock"
    assert len(seen_during_put_back) == 2
    # the failed releases are on the host but never a rollback target; v1.2.0 was the first release
    state = rollback(environment=env, return_state=True)
    assert state.is_failed() and "no earlier release" in state.message
    assert set(versions(app).values()) == {"v1.2.0"}
    details = json.dumps(slack.posts)
    # PM2 names the release and its configuration version (configuration 1: the sample's variables)
    assert "booking-service@v1.3.0+c1 did not come up" in details and "/health/ready answered 503" in details


def test_bad_input_and_failed_builds_or_migrations_change_nothing_live(pg18, app_host, local_repo, slack, monkeypatch):
    app = app_host
    env, db = deployed(pg18, app, local_repo, slack)
    before = {p.name for p in Path(app.releases_dir).iterdir()}

    def fails(tag, expected):
        state = deploy(tag=tag, environment=env, return_state=True)
        assert state.is_failed(), tag
        assert expected in state.message, state.message
        assert release.live_release(app) == "v1.2.0" and set(versions(app).values()) == {"v1.2.0"}
        assert not list(Path(app.releases_dir).glob(".*partial*")), "a half-built release was left behind"
        return state.message

    fails("v9.9.9", "does not exist")
    fails("1.10", "not a release tag")
    fails("v1.3.2", "npm ci failed in fleet-service")
    message = fails("v1.3.3", "migration 003_driver_ratings.sql failed")
    backup_id = message.split("backup ")[1].split()[0]
    assert list(local_repo.glob(f"*/*/*/{backup_id}/manifest.json"))
    assert any("003_driver_ratings.sql" in json.dumps(p) and backup_id in json.dumps(p) for p in slack.posts)
    assert {p.name for p in Path(app.releases_dir).iterdir()} - before <= {"v1.3.3"}
    assert db.password.get_secret_value() not in json.dumps(slack.posts) + message   # DATABASE_URL went by env only

    app.pm2_command = "/nonexistent/pm2"
    app.save(f"{env}-app", overwrite=True)
    fails("v1.2.1", "npm install -g pm2")
    monkeypatch.setenv("PATH", str(Path(app.app_root).parent))     # no node, npm or pm2 there
    fails("v1.2.1", "apt-get install -y nodejs npm")


def test_a_second_deploy_waits_for_the_lock_and_is_refused_when_it_does_not_come(pg18, app_host, local_repo, slack):
    from prefect.concurrency.sync import concurrency

    from ubertruck_ops.core.limits import DEPLOY_LOCK

    app = app_host
    app.deploy_lock_wait_seconds = 2
    db = make_database(pg18, size_mb=1)
    env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook())
    with concurrency(DEPLOY_LOCK, occupy=1, strict=True):
        state = deploy(tag="v1.2.0", environment=env, return_state=True)
    assert state.is_failed() and "TimeoutError" in (state.message + repr(state.result(raise_on_failure=False)))
    assert release.live_release(app) is None


def test_a_deploy_killed_after_the_switch_leaves_a_state_rollback_and_deploy_repair(pg18, app_host, local_repo, slack):
    import os
    import signal
    import subprocess
    import sys
    import time

    from prefect.settings import PREFECT_API_URL

    from ubertruck_ops.tasks import pm2

    app = app_host
    env, _ = deployed(pg18, app, local_repo, slack)
    child = subprocess.Popen(
        [sys.executable, "-m", "ubertruck_ops.deployments.cli", "run", "deploy", "--param", "tag=v1.2.1",
         "--param", f"environment={env}"],
        env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while release.live_release(app) != "v1.2.1" and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert release.live_release(app) == "v1.2.1", "the deploy never reached the switch"
        time.sleep(0.7)                      # somewhere in the hand-over of the first services
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)

    # What was killed left its lease in the global limit; the rollback finds it named in the host's
    # lock file and releases it (without that, under the test's API, the slot would stay taken).
    back = rollback(environment=env)
    assert back["tag"] == "v1.2.0"
    assert set(versions(app).values()) == {"v1.2.0"} and pm2.running_problems(app, "v1.2.0", config=1) == []

    forward = deploy(tag="v1.2.1", environment=env)
    assert forward["status"] == "deployed"
    assert set(versions(app).values()) == {"v1.2.1"} and pm2.running_problems(app, "v1.2.1", config=1) == []
    assert web_version(app) == "v1.2.1"
