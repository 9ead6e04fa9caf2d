"""After go-live: the smoke URLs and the bake window, on real PM2 and Node behind Debian's nginx (its access
log in the watcher's format): a release that is healthy but fails a smoke URL, or starts answering 500
during its bake, is put back by itself."""

from __future__ import annotations

import secrets
import threading
import time

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.deploy import deploy
from ubertruck_ops.tasks import health, release

from tests.helpers import make_database, require, save_env
from tests.parts import LoadGenerator, NginxBalancer


def versions(app) -> set:
    return {health.probe(name, port).version for name, port in app.services.items()}


def test_a_release_failing_a_smoke_url_or_erroring_during_its_bake_is_put_back_by_itself(
        pg18, app_host, local_repo, slack, tmp_path):
    access_log = tmp_path / "access.log"
    (tmp_path / "nginx").mkdir()
    try:
        balancer = NginxBalancer(tmp_path / "nginx", {s: {"web-1": f"127.0.0.1:{p}"} for s, p in app_host.services.items()},
                                 access_log=str(access_log))
    except RuntimeError as missing:
        require(False, str(missing))
    balancer.start()
    try:
        ports = balancer.ports
        smoke = [f"http://127.0.0.1:{ports['booking-service']}/api/bookings",
                 f"http://127.0.0.1:{ports['user-service']}/health"]
        app = app_host.model_copy(update={"smoke_urls": smoke, "smoke_timeout_seconds": 4, "bake_minutes": 1})
        db = make_database(pg18, size_mb=2)
        flag = tmp_path / "booking-errors-start"
        env = save_env(db, BackupRepository(url=str(local_repo)), app=app, slack_url=slack.webhook(),
                       app_config={"DATABASE_URL": db.url(), "JWT_SECRET": secrets.token_urlsafe(16),
                                   "ERROR_FLAG_FILE": str(flag)})
        CheckThresholds(access_log=str(access_log)).save(block_name(env, "thresholds"), overwrite=True)
        first = deploy(tag="v1.2.0", environment=env, bake_minutes=0)
        assert first["status"] == "deployed"

        # Healthy on every endpoint the gate probes, but its API answers 500: the smoke test puts it back.
        failed = deploy(tag="v1.4.1", environment=env, bake_minutes=0, return_state=True)
        assert failed.is_failed()
        assert "smoke test failed" in str(failed.message) and "/api/bookings (HTTP 500)" in str(failed.message)
        assert versions(app) == {"v1.2.0"} and release.live_release(app) == "v1.2.0"
        assert release.read_history(app)[-1].action == "auto-rollback"
        assert any("deploy of v1.4.1 ROLLED BACK" in t and "smoke test failed" in t for t in slack.full_texts())

        # Passes its smoke test, then starts failing requests during the bake: put back within it.
        failures_before_errors: list[int] = []

        def start_errors_once_live() -> None:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and versions(app) != {"v1.4.2"}:
                time.sleep(0.3)
            time.sleep(8)           # past the smoke test, inside the bake
            failures_before_errors.append(len(load.failures))
            flag.touch()

        with LoadGenerator(list(ports.values()), threads=2) as load:
            trigger = threading.Thread(target=start_errors_once_live)
            trigger.start()
            started = time.monotonic()
            baked = deploy(tag="v1.4.2", environment=env, return_state=True)
            took = time.monotonic() - started
            trigger.join()
        assert baked.is_failed(), baked.message
        assert failures_before_errors == [0], (failures_before_errors, load.failures[:5])
        assert "the bake window saw" in str(baked.message) and "5xx" in str(baked.message), baked.message
        assert versions(app) == {"v1.2.0"}
        notice = next(t for t in slack.full_texts() if "deploy of v1.4.2 ROLLED BACK" in t)
        assert "% 5xx" in notice and "critical" in notice
        assert took < 60 * 1 + 120, f"the bake did not put the release back within its window ({took:.0f} s)"
    finally:
        balancer.stop()
