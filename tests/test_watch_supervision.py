"""`watch` is watched: its own dead man's switch (WATCH_PING_URL) hears /start, a success at most
once a period while rounds complete and /fail while they fail; `watch --interval` overrides the
thresholds block. A local ping receiver stands in for Healthchecks.io, a local one for Slack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from pydantic import SecretStr

from ubertruck_ops.blocks.environment import block_name, load_environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.slack import SlackNotices

from tests.helpers import save_env
from tests.parts import PingReceiver, SlackReceiver


def watched_environment(db, tmp_path, pings: PingReceiver, slack: SlackReceiver | None = None, **limits) -> str:
    env = save_env(db, BackupRepository(url=str(tmp_path / "repository")))
    SlackNotices(webhook_url=SecretStr(slack.webhook()) if slack else None, timeout_seconds=3,
                 watch_ping_url=SecretStr(f"{pings.url}/ping/watch-key")).save(block_name(env, "slack"), overwrite=True)
    CheckThresholds(auth_log=None, disk_paths=["/"], **limits).save(f"{env}-thresholds", overwrite=True)
    return env


def kinds(pings: PingReceiver) -> list[str]:
    return [{"/ping/watch-key/start": "start", "/ping/watch-key": "success", "/ping/watch-key/fail": "fail"}[path]
            for path, _ in pings.pings]


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_watch_pings_start_then_success_once_a_period_then_fail_while_slack_refuses_then_success(source_db,
                                                                                                  tmp_path):
    from ubertruck_ops.operations.watch import Watch

    pings, slack = PingReceiver().start(), SlackReceiver().start()
    try:
        env = watched_environment(source_db, tmp_path, pings, slack)
        limits = CheckThresholds.load(f"{env}-thresholds").model_copy(
            update={"watch_interval_seconds": 1, "watch_rounds_to_alert": 1, "disk_paths": ["/"],
                    # only the disk below may alert: CPU and memory on this busy machine must not
                    "cpu_high_pct": 100, "cpu_medium_pct": 100, "memory_high_pct": 100})
        watcher = Watch(env, load_environment(env), limits, ping_period=3)
        thread = threading.Thread(target=watcher.run, daemon=True)
        started = time.monotonic()
        thread.start()
        try:
            wait_for(lambda: watcher.rounds >= 8, 60, "watch did not complete 8 rounds")
            healthy_seconds, healthy_rounds = time.monotonic() - started, watcher.rounds
            healthy = kinds(pings)
            # Slack refuses, and a disk that is not there makes a notice due: the round fails its job.
            slack.status = 500
            watcher.limits.disk_paths.append(str(tmp_path / "no-such-disk"))
            wait_for(lambda: "fail" in kinds(pings), 60, f"no /fail ping: {pings.pings}")
            slack.status = 200
            watcher.limits.disk_paths.remove(str(tmp_path / "no-such-disk"))
            wait_for(lambda: kinds(pings)[-1] == "success", 60, f"no success after the failure: {pings.pings}")
        finally:
            watcher.stop()
            thread.join(timeout=30)
    finally:
        pings.stop()
        slack.stop()
    assert healthy[0] == "start" and set(healthy[1:]) == {"success"}, healthy
    # a success at most once per 3 s period over 8 one-second rounds, and more than once
    assert 2 <= healthy.count("success") <= int(healthy_seconds / 3) + 1 < healthy_rounds, (healthy, healthy_seconds)
    failure = next(body for path, body in pings.pings if path.endswith("/fail"))
    assert "1 notice(s) not delivered: disk " in failure and "no-such-disk down (slack)" in failure, failure
    assert "T000" not in failure and slack.webhook() not in " ".join(body for _, body in pings.pings)
    after = kinds(pings)[kinds(pings).index("fail"):]
    assert after[-1] == "success" and "start" not in after, after


def test_watch_interval_overrides_the_thresholds_block_and_the_command_pings_its_switch(source_db, tmp_path):
    from prefect.settings import PREFECT_API_URL

    pings = PingReceiver().start()
    try:
        env = watched_environment(source_db, tmp_path, pings)        # the block says 30 s
        command = subprocess.Popen([sys.executable, "-m", "ubertruck_ops.deployments.cli", "watch", "--environment",
                                    env, "--interval", "1"], env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = command.stdout.readline()
            assert "every 1 s" in first, first + (command.stderr.read() if command.poll() is not None else "")
            time.sleep(6)
            command.send_signal(signal.SIGTERM)
            out, err = command.communicate(timeout=30)
        finally:
            if command.poll() is None:
                command.kill()
                command.wait()
        assert command.returncode == 0, err[-3000:]
        rounds = int(out.split("stopped after ")[1].split(" round")[0])
        assert rounds >= 3, out            # 30 s rounds would have made one
        assert kinds(pings)[:2] == ["start", "success"], pings.pings
        refused = subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", "watch", "--interval", "0"],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "--interval must be a number of seconds above 0" in refused.stderr
    finally:
        pings.stop()
