"""The services' configuration (the guide's .env.production) on real PM2 and Node: every service process
gets every variable, no secret shows anywhere else, a change goes live with `reconfigure` without a
failed request, and a change that crashes the services is put back by itself."""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from prefect.types import SecretDict

from ubertruck_ops.blocks.app_config import AppConfiguration
from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.deploy import deploy
from ubertruck_ops.flows.reconfigure import reconfigure
from ubertruck_ops.flows.rollback import rollback
from ubertruck_ops.tasks import release

from tests.helpers import make_database, save_env
from tests.parts import LoadGenerator


def service_environments(app) -> dict[str, dict[str, str]]:
    """The environment each running service process has, read from /proc (as root): what it was started
    with, and what PM2's process container copies into process.env from the `pm2_env` it was handed
    (PM2's cluster mode passes an app's environment that way)."""
    seen = {}
    for name, port in app.services.items():
        raw = Path(f"/proc/{_pid_of(port)}/environ").read_bytes()
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        handed = json.loads(env.pop("pm2_env", "{}"))
        env.update({k: str(v) for k, v in handed.items() if isinstance(v, str | int | float)})
        seen[name] = env
    return seen


def _pid_of(port: int) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/health")
    return int(json.loads(conn.getresponse().read())["pid"])


def files_holding(roots: list[Path], values: list[str]) -> dict[Path, int]:
    """Every file under `roots` that holds one of `values`, with its mode."""
    found = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    continue
                data = path.read_bytes()
                if any(v.encode() in data for v in values):
                    found[path] = stat.S_IMODE(path.stat().st_mode)
    return found


def prefect_database_files() -> list[Path]:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    path = Path(url.split("///", 1)[-1]) if "sqlite" in url else None
    assert path is not None and path.exists(), f"the test Prefect database is not a SQLite file: {url}"
    return [p for p in path.parent.glob(path.name + "*") if p.is_file()]


def save_config(env: str, values: dict[str, str]) -> None:
    AppConfiguration(values=SecretDict(values)).save(block_name(env, "app-config"), overwrite=True)


def test_every_service_gets_its_configuration_and_no_secret_shows_in_ps_logs_the_prefect_database_or_an_open_file(
        pg18, app_host, local_repo, slack):
    app = app_host
    db = make_database(pg18, size_mb=2)
    secret_values = {"JWT_SECRET": secrets.token_urlsafe(24), "SMS_API_KEY": "sms-" + secrets.token_hex(12),
                     "REDIS_PASSWORD": "redis-" + secrets.token_hex(12)}
    config = {"DATABASE_URL": db.url(), **secret_values, "FEATURE_LIVE_TRACKING": "true", "PORT": "3001"}
    env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook(), app_config=config)
    previous_umask = os.umask(0o022)       # an operator's usual umask: the deploy itself keeps the secrets private
    try:
        assert deploy(tag="v1.0.0", environment=env)["status"] == "deployed"
        with LoadGenerator(list(app.services.values())) as load:
            assert deploy(tag="v1.1.0", environment=env)["status"] == "deployed"
    finally:
        os.umask(previous_umask)
    assert load.failures == [] and load.ok > 50, load.failures[:5]

    for service, seen in service_environments(app).items():
        for name, value in config.items():
            if name == "PORT":
                assert seen["PORT"] == str(app.services[service]), "each service keeps its own port"
            else:
                assert seen.get(name) == value, f"{service} did not get {name}"
        assert seen["NODE_ENV"] == "production"

    leaked = list(secret_values.values()) + [db.password.get_secret_value()]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert not [v for v in leaked if v in ps], "a secret is on a command line"
    texts = "\n".join(slack.full_texts())
    assert not [v for v in leaked if v in texts], "a secret reached Slack"
    holding = files_holding([Path(app.app_root), Path(app.pm2_home), Path(app.logs)], leaked)
    readable = {str(p): oct(mode) for p, mode in holding.items() if mode & 0o077}
    assert readable == {}, f"files others can read hold a secret: {readable}"
    assert Path(app.app_root, "ecosystem.config.js") in holding      # the one place PM2 reads them from: 0600
    assert stat.S_IMODE(Path(app.shared_dir, "config").stat().st_mode) == 0o700
    logs = [p for p in holding if p.suffix == ".log"]
    assert logs == [], f"a log holds a secret: {logs}"
    database = b"".join(p.read_bytes() for p in prefect_database_files())
    assert not [v for v in secret_values.values() if v.encode() in database], \
        "a secret is readable in the Prefect database (flow parameters, logs, artifacts or an unencrypted block)"


def test_a_configuration_change_goes_live_without_a_failed_request_a_crashing_one_is_put_back_and_rollback_keeps_it(
        pg18, app_host, local_repo, slack):
    app = app_host
    db = make_database(pg18, size_mb=2)
    first = {"DATABASE_URL": db.url(), "JWT_SECRET": secrets.token_urlsafe(16), "FEATURE_LIVE_TRACKING": "false"}
    env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook(), app_config=first)
    assert deploy(tag="v1.0.0", environment=env)["status"] == "deployed"
    second_deploy = deploy(tag="v1.1.0", environment=env, requested_by="octocat (CI)")
    assert second_deploy["commits"] == ["- v1.1.0: adds a migration"]      # what v1.1.0 brings over v1.0.0
    notice = next(t for t in slack.full_texts() if "deploy of v1.1.0 succeeded" in t)
    assert "requested by: octocat (CI)" in notice and "v1.1.0: adds a migration" in notice
    assert "requested by octocat (CI)" in release.read_history(app)[-1].detail
    assert reconfigure(environment=env)["status"] == "already-live"

    second = {**first, "FEATURE_LIVE_TRACKING": "true", "JWT_SECRET": secrets.token_urlsafe(16)}
    save_config(env, second)
    with LoadGenerator(list(app.services.values())) as load:
        changed = reconfigure(environment=env)
    assert changed["status"] == "reconfigured" and (changed["previous_config"], changed["config"]) == (1, 2)
    assert load.failures == [] and load.ok > 50, load.failures[:5]
    assert {seen["FEATURE_LIVE_TRACKING"] for seen in service_environments(app).values()} == {"true"}
    assert release.live_release(app) == "v1.1.0"
    assert any("configuration of v1.1.0 changed" in t for t in slack.texts())

    # The services refuse to start without JWT_SECRET: the change is put back by itself.
    save_config(env, {k: v for k, v in second.items() if k != "JWT_SECRET"})
    with LoadGenerator(list(app.services.values())) as load:
        failed = reconfigure(environment=env, return_state=True)
    assert failed.is_failed(), failed.message
    assert load.failures == [], load.failures[:5]
    assert all(seen["JWT_SECRET"] == second["JWT_SECRET"] for seen in service_environments(app).values())
    notice = next(t for t in slack.full_texts() if "PUT BACK" in t)
    assert "configuration 2" in notice and second["JWT_SECRET"] not in notice
    history = release.read_history(app)
    assert (history[-1].action, history[-1].config, history[-1].outcome) == ("auto-put-back", 2, "succeeded")

    # A rollback runs the previous release with the configuration that is live (a rotated secret stays).
    save_config(env, second)
    back = rollback(environment=env)
    assert back["tag"] == "v1.0.0"
    assert {seen["JWT_SECRET"] for seen in service_environments(app).values()} == {second["JWT_SECRET"]}


def test_a_damaged_or_unwritable_configuration_store_is_refused_by_name_and_leaves_nothing_half_written(tmp_path):
    from ubertruck_ops.blocks.app import AppHost
    from ubertruck_ops.tasks import app_config

    app = AppHost(app_root=str(tmp_path / "app"), log_dir=None)
    first = app_config.store(app, {"JWT_SECRET": "one"})
    app_config.mark_live(app, first)
    folder = app_config.config_dir(app)
    # A damaged version is never reused: the same variables get a new number, the damaged one is named.
    (folder / f"{first}.json").write_text('{"values": {"JWT_')
    assert app_config.store(app, {"JWT_SECRET": "one"}) == first + 1
    with pytest.raises(ValueError, match=f"configuration {first} on the host is damaged"):
        app_config.values_of(app, first)
    (folder / "live").write_text("garbage\n")
    with pytest.raises(ValueError, match="names no configuration version"):
        app_config.live_version(app)
    # A write that fails (a full disk, here a file too large for the limit) leaves the old file and no temporary.
    (folder / "live").write_text(f"{first + 1}\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(OSError):
            app_config.store(app, {"JWT_SECRET": "x" * 1000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{first}.json", f"{first + 1}.json", "live"])
    assert app_config.live_version(app) == first + 1
