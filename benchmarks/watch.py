"""Benchmark: from a service's death to the Slack notice, with the watch's production settings, against the checklists.

One run brings up the sandbox with its application host (embedded PostgreSQL 18, six services
under a PM2 daemon of its own, v1.2.0 deployed, blocks in a throwaway Prefect API), a local
receiver in place of Slack, and `ubertruck-ops watch` as its own process - the command an
operator runs, with the default thresholds: a round every 30 s, 5 s probes, down after 3 failing
rounds (--interval changes only the round interval, for a quick look). Each of --rounds rounds
waits a random part of an interval (a death falls anywhere in the watch's cycle), kills
booking-service (`pm2 delete`, as a crash that PM2 does not bring back), and measures:
  - death -> "health booking-service is DOWN" received by the Slack receiver;
  - service back (handed over again) -> "recovered" received.
The baseline is computed from the same moments of death, not waited for: the time until the
next of the 9:00 / 14:00 / 18:00 checklists (India time), the first warning before `watch`.
Figures are the median (min-max) of the rounds. At the end SIGTERM stops the command; its exit
status and how long it took are printed. Everything started is stopped.

    .venv/bin/python benchmarks/watch.py [--rounds 3] [--interval 30] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench_sandbox import PROJECT, prepare, sandbox_with_app

CHECKLIST_HOURS = (9, 14, 18)
DOWN = "health booking-service is DOWN"
RECOVERED = "health booking-service recovered"


def until_next_checklist(moment: datetime) -> float:
    """Seconds from `moment` to the next checklist run (India time)."""
    local = moment.astimezone(ZoneInfo("Asia/Kolkata"))
    candidates = [local.replace(hour=h, minute=0, second=0, microsecond=0) + timedelta(days=d)
                  for d in (0, 1) for h in CHECKLIST_HOURS]
    return min((c - local).total_seconds() for c in candidates if c > local)


def wait_for_post(slack, text: str, after: int, seconds: float) -> float | None:
    """The monotonic time the first post after index `after` containing `text` was seen, or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(text in post.get("text", "") for post in slack.posts[after:]):
            return time.monotonic()
        time.sleep(0.05)
    return None


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=float, default=None, help="seconds between rounds (default: the block's 30)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    root = prepare("ut-bench-watch-", args.workdir)

    from prefect.settings import PREFECT_API_URL

    from ubertruck_ops.blocks.environment import block_name
    from ubertruck_ops.blocks.monitoring import CheckThresholds
    from ubertruck_ops.flows.deploy import deploy
    from ubertruck_ops.tasks import pm2

    from tests.parts import SlackReceiver

    slack = SlackReceiver().start()
    notice: list[float] = []
    recovery: list[float] = []
    baseline: list[float] = []
    stopped = None
    try:
        with sandbox_with_app(root, slack_webhook=slack.webhook()) as env:
            app = env.app
            clock = time.monotonic()
            deploy(tag="v1.2.0", environment="bench")
            print(f"deploy v1.2.0: {time.monotonic() - clock:.1f} s", flush=True)
            limits = CheckThresholds(auth_log=None)
            if args.interval:
                limits.watch_interval_seconds = args.interval
            limits.save(block_name("bench", "thresholds"), overwrite=True)
            interval = limits.watch_interval_seconds
            watcher = subprocess.Popen(
                [sys.executable, "-m", "ubertruck_ops.deployments.cli", "watch", "--environment", "bench"],
                cwd=PROJECT, env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()},
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                print(watcher.stdout.readline().strip(), flush=True)
                time.sleep(interval + 8)          # one healthy round is behind us
                ecosystem = Path(app.app_root) / "ecosystem.config.js"
                for number in range(1, args.rounds + 1):
                    time.sleep(random.uniform(0, interval))
                    booking = next(a for a in pm2.list_apps(app) if a.service == "booking-service")
                    posts = len(slack.posts)
                    killed, killed_at = time.monotonic(), datetime.now().astimezone()
                    pm2.delete_apps(app, [booking.pm_id])
                    seen = wait_for_post(slack, DOWN, posts, interval * 5 + 30)
                    baseline.append(until_next_checklist(killed_at))
                    pm2.hand_over.fn(app, "booking-service", "v1.2.0", ecosystem)
                    back = time.monotonic()
                    recovered = wait_for_post(slack, RECOVERED, posts, interval * 3 + 30)
                    if seen is not None:
                        notice.append(seen - killed)
                    if recovered is not None:
                        recovery.append(recovered - back)
                    print(f"round {number}: killed at {killed_at:%H:%M:%S}, notice after "
                          f"{seen - killed if seen else float('nan'):.1f} s, recovered notice "
                          f"{recovered - back if recovered else float('nan'):.1f} s after it was back; "
                          f"next checklist in {baseline[-1] / 3600:.1f} h; load average {os.getloadavg()[0]:.1f}",
                          flush=True)
            finally:
                sent = time.monotonic()
                watcher.send_signal(signal.SIGTERM)
                try:
                    out, _ = watcher.communicate(timeout=60)
                    stopped = (watcher.returncode, time.monotonic() - sent, out.strip())
                except subprocess.TimeoutExpired:
                    watcher.kill()
                    watcher.wait()
    finally:
        slack.stop()

    print(f"\nwatch: a round every {interval:g} s, 5 s probes, down after 3 failing rounds; "
          f"median (min-max) of {args.rounds} rounds; {len(notice)} of {args.rounds} deaths noticed.\n")
    print("| measurement | figure |\n|---|---|")
    print(f"| service killed -> Slack critical notice (watch) | {spread(notice)} |")
    print(f"| service back -> Slack recovery notice (watch) | {spread(recovery)} |")
    print(f"| service killed -> next checklist (before watch; computed from the same moments) | "
          f"{spread([b / 3600 for b in baseline]).replace(' s', ' h')} |")
    day = [until_next_checklist(datetime(2026, 12, 1, tzinfo=ZoneInfo("Asia/Kolkata")) + timedelta(minutes=m)) / 3600
           for m in range(24 * 60)]
    print(f"| service killed at any minute of a day -> next checklist (computed) | "
          f"mean {statistics.mean(day):.1f} h, max {max(day):.1f} h |")
    if stopped:
        print(f"\nSIGTERM -> exit {stopped[0]} after {stopped[1]:.1f} s: {stopped[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
