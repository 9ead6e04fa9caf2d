"""Benchmark: deploy and rollback time, and requests served and lost while they run.

One run brings up the sandbox with its application host (embedded PostgreSQL 18, the sample
application's repository, six services under a PM2 daemon of its own, blocks in a throwaway
Prefect API) and, while three client threads send GET requests to every service without a
pause (a new connection each, as nginx proxies by default), measures:
  (1) deploy v1.0.0 on an empty host (build, backup, migration 001) - no load, information;
  (2) deploy v1.1.0 (build, backup, migration 002, hand-over, gate, frontend) under load;
  (3) deploy v1.2.0 (build, no migration) under load;
  (4) --rounds x (rollback to the previous release, then rollback again = roll forward) under
      load; goal: every rollback <= 10 s (the issue's), failures 0;
  (5) the guide's way for comparison: `pm2 restart <app>` per service (deploy.sh / rollback.sh)
      under the same load; failures counted.
Wall time is the flow run's, from call to return, as an operator or CI waits for it.
Prints a Markdown table; exit status 0 whatever the verdicts. Everything started is stopped.

    .venv/bin/python benchmarks/deploy.py [--rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROLLBACK_GOAL = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ut-bench-deploy-", dir=args.workdir))   # a new folder inside --workdir
    root.chmod(0o755)   # the embedded PostgreSQL runs as an unprivileged user when we are root
    os.environ["PREFECT_HOME"] = str(root / "prefect")      # keep the operator's Prefect home untouched
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from tests.parts import LoadGenerator
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits
    from ubertruck_ops.flows.deploy import deploy
    from ubertruck_ops.flows.rollback import rollback
    from ubertruck_ops.sandbox.environment import Sandbox
    from ubertruck_ops.tasks import pm2

    rows: list[tuple] = []
    sandbox = Sandbox(root / "sandbox", size_mb=20, with_app=True)
    try:
        with prefect_test_harness(server_startup_timeout=120), \
                temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            ensure_concurrency_limits()
            env = sandbox.start(save_as="bench")
            app = env.app
            ports = list(app.services.values())

            def timed(label, call, load=True):
                clock = time.monotonic()
                if load:
                    with LoadGenerator(ports) as generator:
                        result = call()
                else:
                    generator, result = None, call()
                wall = time.monotonic() - clock
                ok = generator.ok if generator else None
                failed = len(generator.failures) if generator else None
                rows.append((label, wall, ok, failed, generator.failures[:3] if generator else []))
                print(f"{label}: {wall:.1f} s, requests ok {ok}, failed {failed}", flush=True)
                return result, wall, failed

            timed("(1) deploy v1.0.0 on an empty host (build + backup + migration), no load",
                  lambda: deploy(tag="v1.0.0", environment="bench"), load=False)
            timed("(2) deploy v1.1.0 (build + backup + migration + hand-over)", lambda: deploy(tag="v1.1.0", environment="bench"))
            timed("(3) deploy v1.2.0 (build, no migration)", lambda: deploy(tag="v1.2.0", environment="bench"))
            rollbacks, rollback_failures = [], 0
            for number in range(1, args.rounds + 1):
                for direction in ("back", "forward"):
                    _, wall, failed = timed(f"(4.{number}) rollback ({direction})", lambda: rollback(environment="bench"))
                    rollbacks.append(wall)
                    rollback_failures += failed

            def guide_restart():
                for item in pm2.list_apps(app):
                    pm2.restart_app(app, item.pm_id)      # the guide: pm2 restart, one app after another
            timed("(5) the guide's way: pm2 restart each service", guide_restart)
    finally:
        sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)

    print("\n| measurement | wall | requests ok | failed |\n|---|---|---|---|")
    for label, wall, ok, failed, examples in rows:
        print(f"| {label} | {wall:.1f} s | {ok if ok is not None else '-'} | {failed if failed is not None else '-'} |")
    if rollbacks:
        worst = max(rollbacks)
        print(f"\nrollback: median {statistics.median(rollbacks):.1f} s, max {worst:.1f} s over {len(rollbacks)} runs "
              f"-> {'PASS' if worst <= ROLLBACK_GOAL else 'FAIL'} (goal <= {ROLLBACK_GOAL:.0f} s); "
              f"failed requests during deploys and rollbacks: "
              f"{sum(r[3] or 0 for r in rows[:-1])} -> {'PASS' if sum(r[3] or 0 for r in rows[:-1]) == 0 else 'FAIL'}")
    for label, _, _, failed, examples in rows:
        if failed:
            print(f"examples of failures in {label}: {examples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
