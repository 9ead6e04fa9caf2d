"""Benchmark: deploy and rollback time, and requests served and lost while they run, under two loads.

One run brings up the sandbox with its application host (embedded PostgreSQL 18, the sample
application's repository, six services under a PM2 daemon of its own, blocks in a throwaway
Prefect API), deploys v1.0.0, v1.1.0 and v1.2.0 (builds, backups, migrations) and builds the
never-ready v1.3.1 by deploying it once (it is rolled back), all without load. Then, for each load
- "three clients": three threads, each sending GET requests to every service in turn;
- "one client per service": six threads, each sending to its own service;
both without a pause and on a new connection each (as nginx proxies by default) - it runs --rounds
rounds of:
  (a) `rollback` v1.2.0 -> v1.1.0: the flow's wall time, and the time from the command's start
      until every service answers only v1.1.0 (seen by the clients); goals <= 5 s and <= 10 s;
  (b) deploy v1.2.0, already built (no build, no migration): wall and time to all serving;
      goal <= 10 s;
  (c) deploy v1.3.1 (built; payment-service never gets ready): the flow fails its health gate and
      puts v1.2.0 back by itself; wall; goal <= the health deadline (--health-deadline) + 5 s;
  (d) the guide's way for comparison: `pm2 restart <app>` per app, one after another
      (deploy.sh / rollback.sh);
  (e) a full deploy of v1.2.1 (its earlier build removed first): the realistic application's build
      of six TypeScript services and the frontend with a warm npm cache (npm ci with dev
      dependencies, tsc with source maps, npm test, npm audit, prune), go-live, health gate; no
      smoke URLs, bake 0; goal <= 90 s.
Failed requests are counted in every step; goal 0 in (a)-(c). Every figure is the median of
the rounds with min and max. Wall time is the flow run's, from call to return, as an operator or
CI waits for it. Prints a Markdown table; exit status 0 whatever the verdicts. Everything started
is stopped.

    .venv/bin/python benchmarks/deploy.py [--rounds 3] [--health-deadline 10] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

from bench_sandbox import prepare, sandbox_with_app

ROLLBACK_WALL_GOAL = 5.0
ROLLBACK_SERVING_GOAL = 10.0
DEPLOY_GOAL = 10.0
FULL_DEPLOY_GOAL = 90.0
AUTO_ROLLBACK_MARGIN = 5.0
LOADS = ("three clients", "one client per service")


class Clients:
    """Threads sending GET /api/ping without a pause, a new connection each; they count answers and
    failures and remember, per port, when each version answered first and last."""

    def __init__(self, ports: list[int], per_service: bool, timeout: float = 5):
        self.routes = [[port] for port in ports] if per_service else [list(ports)] * 3
        self.timeout = timeout
        self.ok = 0
        self.failures: list[str] = []
        self.first: dict[tuple[int, str], float] = {}
        self.last: dict[tuple[int, str], float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _loop(self, ports: list[int]) -> None:
        while not self._stop.is_set():
            for port in ports:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
                    conn.request("GET", "/api/ping", headers={"Connection": "close"})
                    reply = conn.getresponse()
                    body = reply.read()
                    conn.close()
                    if reply.status != 200:
                        raise RuntimeError(f"HTTP {reply.status}")
                    version, now = json.loads(body).get("version"), time.monotonic()
                    with self._lock:
                        self.ok += 1
                        self.first.setdefault((port, version), now)
                        self.last[(port, version)] = now
                except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                    with self._lock:
                        self.failures.append(f"port {port}: {type(exc).__name__}: {exc}")

    def serving_since(self, ports: list[int], version: str) -> float | None:
        """Return when every port started answering only `version` (None: one never did)."""
        moments = []
        for port in ports:
            if (port, version) not in self.first:
                return None
            others = [t for (p, v), t in self.last.items() if p == port and v != version]
            moments.append(max([self.first[(port, version)], *others]))
        return max(moments)

    def __enter__(self) -> Clients:
        for ports in self.routes:
            thread = threading.Thread(target=self._loop, args=(ports,), daemon=True)
            thread.start()
            self._threads.append(thread)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def spread(values: list[float | None]) -> str:
    """Given one figure per round, return 'median (min-max)' in seconds or a count."""
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    if len(known) < len(values):
        return f"{statistics.median(known):.1f} s ({min(known):.1f}-{max(known):.1f}; {len(values) - len(known)} missing)"
    return f"{statistics.median(known):.1f} s ({min(known):.1f}-{max(known):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--health-deadline", type=float, default=10.0,
                        help="the app host's health gate deadline, seconds (the sandbox's own: 20)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    root = prepare("ut-bench-deploy-", args.workdir)      # a new folder inside --workdir

    from ubertruck_ops.blocks.environment import block_name
    from ubertruck_ops.flows.deploy import deploy
    from ubertruck_ops.flows.rollback import rollback
    from ubertruck_ops.tasks import pm2, release

    setup_rows: list[tuple[str, float]] = []
    figures: dict[tuple[str, str], list] = {}
    examples: dict[tuple[str, str], list[str]] = {}
    with sandbox_with_app(root) as env:
        app = env.app
        app.health_timeout_seconds = args.health_deadline
        app.save(block_name("bench", "app"), overwrite=True)
        ports = list(app.services.values())

        def setup(label, call):
            clock = time.monotonic()
            call()
            setup_rows.append((label, time.monotonic() - clock))
            print(f"{label}: {setup_rows[-1][1]:.1f} s", flush=True)

        setup("deploy v1.0.0 on an empty host (build + backup + migration 001)",
              lambda: deploy(tag="v1.0.0", environment="bench"))
        setup("deploy v1.1.0 (build + backup + migration 002)", lambda: deploy(tag="v1.1.0", environment="bench"))
        setup("deploy v1.2.0 (build, no migration)", lambda: deploy(tag="v1.2.0", environment="bench"))
        setup("deploy v1.3.1 (build; never ready: rolled back to v1.2.0)",
              lambda: deploy(tag="v1.3.1", environment="bench", return_state=True))
        assert release.live_release(app) == "v1.2.0"

        def measure(load, key, call, target=None):
            with Clients(ports, per_service=load == LOADS[1]) as clients:
                clock = time.monotonic()
                outcome = call()
                wall = time.monotonic() - clock
                time.sleep(0.5)        # let the clients see what serves now
            since = clients.serving_since(ports, target) if target else None
            serving = since - clock if since is not None else None
            loadavg = os.getloadavg()[0]     # other work on the machine shows here
            for name, value in (("wall", wall), ("serving", serving), ("failed", len(clients.failures)),
                                ("ok", clients.ok), ("loadavg", loadavg)):
                figures.setdefault((load, f"{key} {name}"), []).append(value)
            examples.setdefault((load, key), []).extend(clients.failures[:3])
            print(f"[{load}] {key}: {wall:.1f} s" + (f", all serving {target} after {serving:.1f} s"
                                                     if serving is not None else "")
                  + f", requests ok {clients.ok}, failed {len(clients.failures)}, load average {loadavg:.1f}",
                  flush=True)
            return outcome

        def guide_restart():
            for item in pm2.list_apps(app):
                pm2.restart_app(app, item.pm_id)      # the guide: pm2 restart, one app after another

        for load in LOADS:
            for number in range(1, args.rounds + 1):
                print(f"-- {load}, round {number}", flush=True)
                back = measure(load, "rollback", lambda: rollback(to="v1.1.0", environment="bench"), "v1.1.0")
                assert back["status"] == "rolled-back", back
                forward = measure(load, "deploy", lambda: deploy(tag="v1.2.0", environment="bench"), "v1.2.0")
                assert forward["status"] == "deployed", forward
                state = measure(load, "auto-rollback",
                                lambda: deploy(tag="v1.3.1", environment="bench", return_state=True), "v1.2.0")
                assert state.is_failed() and release.live_release(app) == "v1.2.0", state
                measure(load, "guide", guide_restart)
                release.remove_releases(app, [t for t in ("v1.2.1",) if release.live_release(app) != t])
                full = measure(load, "full deploy", lambda: deploy(tag="v1.2.1", environment="bench", bake_minutes=0),
                               "v1.2.1")
                assert full["status"] == "deployed", full

    print("\nSetup, no load:\n\n| step | wall |\n|---|---|")
    for label, wall in setup_rows:
        print(f"| {label} | {wall:.1f} s |")
    deadline = args.health_deadline
    print(f"\nMedian (min-max) of {args.rounds} rounds; health gate deadline {deadline:.0f} s.\n")
    print("| measurement | goal | " + " | ".join(LOADS) + " |\n|---|---|" + "---|" * len(LOADS))
    lines = [
        ("`rollback` flow, wall", "rollback wall", f"<= {ROLLBACK_WALL_GOAL:.0f} s"),
        ("`rollback`: command to every service serving the target", "rollback serving",
         f"<= {ROLLBACK_SERVING_GOAL:.0f} s"),
        ("deploy of an already-built release, wall", "deploy wall", f"<= {DEPLOY_GOAL:.0f} s"),
        ("deploy: command to every service serving it", "deploy serving", "-"),
        ("automatic rollback of a never-ready release, wall", "auto-rollback wall",
         f"<= {deadline + AUTO_ROLLBACK_MARGIN:.0f} s (deadline + {AUTO_ROLLBACK_MARGIN:.0f})"),
        ("the guide's `pm2 restart` of each app, wall", "guide wall", "-"),
        ("full deploy (build, tests, audit, prune, go-live) of the TypeScript app, wall", "full deploy wall",
         f"<= {FULL_DEPLOY_GOAL:.0f} s"),
    ]
    for label, key, goal in lines:
        print(f"| {label} | {goal} | " + " | ".join(spread(figures.get((load, key), [])) for load in LOADS) + " |")
    for label, key in (("failed requests: rollback / deploy / auto-rollback / full deploy",
                        ("rollback", "deploy", "auto-rollback", "full deploy")),
                       ("failed requests: the guide's `pm2 restart`", ("guide",))):
        cells = []
        for load in LOADS:
            cells.append(" / ".join(",".join(str(v) for v in figures.get((load, f"{k} failed"), [])) for k in key))
        print(f"| {label} | {'0' if len(key) > 1 else '-'} | " + " | ".join(cells) + " |")
    print("| 1-minute load average after each step (median, min-max) | - | " + " | ".join(
        f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})" if (v := [
            x for k in ("rollback", "deploy", "auto-rollback", "guide")
            for x in figures.get((load, f"{k} loadavg"), [])]) else "-" for load in LOADS) + " |")
    print("| requests answered during a rollback (median) | - | " + " | ".join(
        f"{statistics.median(figures.get((load, 'rollback ok'), [0])):.0f}" for load in LOADS) + " |")

    verdicts = []
    for load in LOADS:
        def worst(key, load=load):      # called in this round only: bound to it all the same
            values = [v for v in figures.get((load, key), []) if v is not None]
            return max(values) if len(values) == args.rounds else float("inf")
        lost = sum(sum(figures.get((load, f"{k} failed"), [])) for k in ("rollback", "deploy", "auto-rollback",
                                                                           "full deploy"))
        checks = [("rollback wall", statistics.median(figures.get((load, "rollback wall"), [float("inf")]))
                   <= ROLLBACK_WALL_GOAL),
                  ("rollback serving (every round)", worst("rollback serving") <= ROLLBACK_SERVING_GOAL),
                  ("deploy wall", statistics.median(figures.get((load, "deploy wall"), [float("inf")])) <= DEPLOY_GOAL),
                  ("auto-rollback wall", statistics.median(figures.get((load, "auto-rollback wall"), [float("inf")]))
                   <= deadline + AUTO_ROLLBACK_MARGIN),
                  ("full deploy wall", statistics.median(figures.get((load, "full deploy wall"), [float("inf")]))
                   <= FULL_DEPLOY_GOAL),
                  ("zero failed requests", lost == 0)]
        verdicts.append(f"{load}: " + ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in checks))
    print("\n" + "\n".join(verdicts))
    for (load, key), failures in examples.items():
        if failures:
            print(f"examples of failures [{load}] {key}: {failures[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
