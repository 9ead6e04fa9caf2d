"""Benchmark: morning-checklist wall time with every target healthy, and with one endpoint hanging.

One run brings up the sandbox with its application host (embedded PostgreSQL 18, six services
under PM2, blocks in a throwaway Prefect API), deploys v1.2.0 (which also takes the backup the
checklist verifies) and times the morning-checklist flow, call to return, --runs times:
  (a) every target healthy;
  (b) the same plus one extra endpoint that accepts connections and never answers.
Goal: (b) <= the per-check timeout + 5 s. Prints a Markdown table; exit status 0 whatever the verdict.

    .venv/bin/python benchmarks/checklists.py [--runs 3] [--timeout 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench_sandbox import prepare, sandbox_with_app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10, help="per-check timeout (the block's default: 10 s)")
    args = parser.parse_args()
    root = prepare("ut-bench-checklists-")

    from ubertruck_ops.blocks.monitoring import CheckThresholds
    from ubertruck_ops.flows.checklists import morning_checklist
    from ubertruck_ops.flows.deploy import deploy
    from ubertruck_ops.tasks.checks.orchestration import checklist_rows

    from tests.parts import SilentServer

    timings: dict[str, list[float]] = {"healthy": [], "one endpoint hanging": []}
    states: dict[str, list[str]] = {"healthy": [], "one endpoint hanging": []}
    silent = SilentServer().start()
    try:
        with sandbox_with_app(root):
            deploy(tag="v1.2.0", environment="bench")
            for case, endpoints in (("healthy", []), ("one endpoint hanging", [silent.url])):
                CheckThresholds(check_timeout_seconds=args.timeout, endpoints=endpoints).save(
                    "bench-thresholds", overwrite=True)
                for _ in range(args.runs):
                    clock = time.monotonic()
                    state = morning_checklist(environment="bench", return_state=True)
                    timings[case].append(time.monotonic() - clock)
                    states[case].append(state.type.value)
                    rows = checklist_rows(state.state_details.flow_run_id)
                    tally = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in ("critical", "error", "warn", "ok"))
                    print(f"{case}: {timings[case][-1]:.1f} s ({state.type.value}; {len(rows)} checks: {tally})",
                          flush=True)
    finally:
        silent.stop()

    goal = args.timeout + 5
    print("\n| case | runs | median | max | final states | goal | result |\n|---|---|---|---|---|---|---|")
    for case, values in timings.items():
        if not values:
            continue
        verdict = "-" if case == "healthy" else ("PASS" if max(values) <= goal else "FAIL")
        print(f"| {case} | {len(values)} | {statistics.median(values):.1f} s | {max(values):.1f} s | "
              f"{', '.join(sorted(set(states[case])))} | {'information' if case == 'healthy' else f'<= {goal:.0f} s'} "
              f"| {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
