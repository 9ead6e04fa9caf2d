"""The `ubertruck-ops` command: demo, blocks init, run."""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_params(pairs: list[str]) -> dict:
    """Given KEY=VALUE strings, return parameters: VALUE as JSON when it parses, else the plain string.

    Raise ValueError on a pair without '='.
    """
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _quiet_defaults() -> None:
    # No network here and no reason to phone home from an ops host.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The ephemeral API migrates its database on first start; 20 s is too short on a busy 2-core host.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ubertruck-ops", description="Ubertruck operations as Prefect flows.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="bring up the sandbox and run nightly-backup and restore-drill on it")
    demo.add_argument("--size-mb", type=int, default=50, help="sandbox database size (default 50)")
    demo.add_argument("--dir", default=".sandbox", help="folder for the sandbox (default .sandbox)")
    blocks = commands.add_parser("blocks", help="manage block documents")
    blocks_commands = blocks.add_subparsers(dest="blocks_command", required=True)
    init = blocks_commands.add_parser("init", help="create or update an environment's blocks from variables")
    init.add_argument("--env-file", help="dotenv file overlaid on the process environment")
    init.add_argument("--name", default="production", help="environment name (default production)")
    run = commands.add_parser("run", help="run one flow in this process")
    run.add_argument("flow", help="flow name, e.g. nightly-backup")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="flow parameter; VALUE is JSON when it parses as JSON, else a string")
    args = parser.parse_args(argv)
    _quiet_defaults()

    try:
        if args.command == "demo":
            from ubertruck_ops.deployments.demo import run_demo

            return run_demo(args.dir, args.size_mb)
        if args.command == "blocks":
            from ubertruck_ops.deployments.setup import blocks_init

            for item in blocks_init(args.name, args.env_file):
                print(f"saved {item}")
            return 0
        if args.command == "run":
            return run_flow(args.flow, parse_params(args.param))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


def run_flow(name: str, params: dict) -> int:
    """Run flow `name` with `params` in this process; return 0 only when the run completed."""
    from ubertruck_ops.deployments.registry import get_flow

    flow = get_flow(name)
    accepted = set(flow.parameters.properties)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"flow {name} has no parameter(s) {', '.join(unknown)}; it takes: {', '.join(sorted(accepted))}")
    state = flow(**params, return_state=True)
    if state.is_completed():
        result = state.result()
        print(json.dumps(result, indent=2, default=str) if result is not None else f"{name}: completed")
        return 0
    print(f"{name}: {state.type.value}: {state.message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
