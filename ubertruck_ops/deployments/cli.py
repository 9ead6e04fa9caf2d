"""The `ubertruck-ops` command: demo, serve, blocks init, run, wal-archive, wal-push, watch, deployments-yaml,
systemd-units."""

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
    parser = argparse.ArgumentParser(
        prog="ubertruck-ops",
        description="Ubertruck operations as Prefect flows: backups, restores and drills, deploys and rollbacks, "
                    "the daily checklists and maintenance, WAL archiving and a watch with alerts.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="bring up the sandbox (embedded PostgreSQL, sample app under PM2) and run "
                                            "five flows on it: nightly-backup, restore-drill, deploy (v1.1.0, "
                                            "v1.2.0, the broken v1.3.0 rolled back by itself), rollback and "
                                            "morning-checklist; Prefect state kept in DIR-prefect")
    demo.add_argument("--size-mb", type=int, default=50, help="sandbox database size (default 50)")
    demo.add_argument("--dir", default=".sandbox", help="folder for the sandbox, wiped and rebuilt (default .sandbox)")
    blocks = commands.add_parser("blocks", help="manage an environment's block documents (blocks init)")
    blocks_commands = blocks.add_subparsers(dest="blocks_command", required=True)
    init = blocks_commands.add_parser("init", help="create or update an environment's blocks from environment "
                                                   "variables, record its six-hourly backup tier, check WAL safety, "
                                                   "create the concurrency limits and server-side alerts")
    init.add_argument("--env-file", help="dotenv file overlaid on the process environment")
    init.add_argument("--name", default="production", help="environment name (default production)")
    run = commands.add_parser("run", help="run one flow in this process; exit status 0 only when it completed "
                                          "(PREFECT_API_URL's server, else a private one for this process)")
    run.add_argument("flow", help="flow name, e.g. nightly-backup")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="flow parameter; VALUE is JSON when it parses as JSON, else a string")
    push = commands.add_parser("wal-push", help="archive one WAL file (PostgreSQL's archive_command: wal-push %%p)")
    push.add_argument("path", help="the WAL file, as PostgreSQL's %%p")
    push.add_argument("--environment", default="production", help="environment whose repository and key to use")
    archive = commands.add_parser("wal-archive", help="stream WAL continuously into the repository (pg_receivewal "
                                                       "into a durable spool; long-lived; SIGTERM stops)")
    archive.add_argument("--environment", default="production", help="environment to archive")
    watcher = commands.add_parser("watch", help="check services, database, disks and traffic every 30 s and alert "
                                                "on incidents (long-lived; SIGTERM stops)")
    watcher.add_argument("--environment", default="production", help="environment to watch")
    watcher.add_argument("--interval", type=_seconds, metavar="SECONDS",
                         help="seconds between rounds, instead of the thresholds block's watch_interval_seconds")
    units = commands.add_parser("systemd-units", help="print (or write) systemd unit files for serve (or a worker "
                                                      "per app host queue), wal-archive and watch")
    units.add_argument("--environment", default="production", help="environment the units act on")
    units.add_argument("--user", default="ubertruck-ops", help="the dedicated user they run as (default "
                                                               "ubertruck-ops)")
    units.add_argument("--directory", help="write each unit into this folder instead of printing them")
    serve = commands.add_parser("serve", help="serve every deployment with its schedule until stopped, after "
                                              "creating the concurrency limits and alerts (starts a local Prefect "
                                              "server with its UI, asking for an auth string, when PREFECT_API_URL "
                                              "is unset)")
    serve.add_argument("--environment", default="production", help="environment the deployments act on")
    serve.add_argument("--host", default="127.0.0.1", help="local server's address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4200, help="local server's port (default 4200)")
    render = commands.add_parser("deployments-yaml", help="print prefect.yaml for workers, rendered from the "
                                                         "schedules serve uses")
    render.add_argument("--environment", default="production", help="environment the deployments act on")
    silence = commands.add_parser("silence", help="quiet the alerts of an environment (or one target) for a while: "
                                                  "still recorded, nobody paged, emailed or posted; always expires")
    silence.add_argument("--environment", default="production", help="environment to silence")
    silence.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                         help="how long: 30m, 2h, 1h30m, 1d (at most 7 days)")
    silence.add_argument("--reason", required=True, help="why, as the Slack announcement and `silences` show it")
    silence.add_argument("--target", help="only alerts about this target (a service such as booking-service, a "
                                          "check, a flow); default: every alert of the environment")
    listing = commands.add_parser("silences", help="list the silences of an environment (active, and ended today)")
    listing.add_argument("--environment", default="production", help="environment whose silences to list")
    unsilence = commands.add_parser("unsilence", help="end a silence now (announced in Slack)")
    unsilence.add_argument("id", help="the silence's id, as `silence` and `silences` print it")
    unsilence.add_argument("--environment", default="production", help="environment of the silence")
    args = parser.parse_args(argv)
    # Everything this process and its children write is private unless a step shares it on purpose
    # (docs/safety.md, "Private files"); runs started by `serve` inherit it.
    os.umask(0o077)
    if args.command == "demo":
        from ubertruck_ops.deployments.demo import keep_demo_apart

        keep_demo_apart(args.dir)   # before Prefect is imported: it reads PREFECT_HOME once, at import
    _quiet_defaults()
    if args.command == "wal-push":
        return wal_push(args.path, args.environment)     # no Prefect in this process: see wal_push

    try:
        if args.command in ("demo", "blocks", "run", "wal-archive", "watch", "systemd-units", "silence", "silences",
                            "unsilence"):
            from ubertruck_ops.deployments.api import private_api

            if args.command == "run":
                check_run(args.flow, parse_params(args.param))     # refuse bad input before any server starts

            with private_api():
                return _with_api(args)
        if args.command == "serve":
            from ubertruck_ops.deployments.serve import serve_everything

            return serve_everything(args.environment, args.host, args.port)
        if args.command == "deployments-yaml":
            from ubertruck_ops.deployments.schedules import render_prefect_yaml

            unscheduled = frozenset()
            if os.environ.get("PREFECT_API_URL"):   # the tier blocks init recorded there decides
                from ubertruck_ops.deployments.api import private_api
                from ubertruck_ops.deployments.serve import unscheduled_flows

                with private_api():     # PREFECT_API_URL is set: its server's identity checked, no server started
                    unscheduled = unscheduled_flows(args.environment)
            print(render_prefect_yaml(args.environment, unscheduled), end="")
            return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


def _with_api(args) -> int:
    """The commands that talk to the Prefect API (given, or the private one `main` started)."""
    if args.command == "demo":
        from ubertruck_ops.deployments.demo import run_demo

        return run_demo(args.dir, args.size_mb)
    if args.command == "blocks":
        from ubertruck_ops.deployments.setup import (
            alert_channel_lines,
            blocks_init,
            ensure_alerts,
            record_tier,
            wal_safety,
        )

        for item in blocks_init(args.name, args.env_file):
            print(f"saved {item}")
        print(record_tier(args.name))
        for line in wal_safety(args.name):      # loud, but never a failed blocks init: the blocks are saved
            print(line, flush=True)
        for line in ensure_alerts(args.name):
            print(line)
        for line in alert_channel_lines(args.name):
            print(line)
        return 0
    if args.command in ("silence", "silences", "unsilence"):
        return silence_command(args)
    if args.command == "run":
        return run_flow(args.flow, parse_params(args.param))
    if args.command == "watch":
        return watch(args.environment, args.interval)
    if args.command == "systemd-units":
        from ubertruck_ops.deployments.units import print_units

        return print_units(args.environment, args.user, args.directory)
    return wal_archive(args.environment)


def silence_command(args) -> int:
    """silence | silences | unsilence: print what was done, one line per silence."""
    from ubertruck_ops.operations import silences

    if args.command == "silence":
        made = silences.make(args.environment, args.duration, args.reason, args.target)
        print(f"silenced {made.target or 'every alert'} of {made.environment} until {made.ends:%Y-%m-%d %H:%M:%S %Z} "
              f"(id {made.id}; `ubertruck-ops unsilence {made.id}` ends it)")
        return 0
    if args.command == "unsilence":
        ended = silences.end(args.environment, args.id)
        print(f"silence {ended.id} of {ended.environment} ended; alerts reach people again")
        return 0
    listed = silences.listing(args.environment)
    for line in listed or [f"no silences in {args.environment}"]:
        print(line)
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--interval must be a number of seconds above 0, got {text}")
    return value


def watch(environment: str, interval: float | None = None) -> int:
    """Watch `environment` until SIGINT or SIGTERM (operations/watch.py), rounds `interval` seconds
    apart when given (else the thresholds block's watch_interval_seconds)."""
    import signal

    from ubertruck_ops.blocks.environment import load_environment
    from ubertruck_ops.operations.watch import Watch

    env = load_environment(environment)
    limits = env.thresholds
    if interval is not None:
        limits = limits.model_copy(update={"watch_interval_seconds": interval})
    watcher = Watch(environment, env, limits)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: watcher.stop())
    print(f"watching {environment}: {len(watcher.plan())} checks every {watcher.limits.watch_interval_seconds:g} s, "
          f"down after {watcher.limits.watch_rounds_to_alert} failing rounds (SIGTERM stops)", flush=True)
    watcher.run()
    rounds = f"{watcher.rounds} round{'' if watcher.rounds == 1 else 's'}"
    print(f"stopped after {rounds}; down now: {', '.join(watcher.incidents.down()) or 'nothing'}", flush=True)
    return 0


def check_run(name: str, params: dict):
    """Return flow `name`. Raise ValueError when it is unknown or does not take `params`."""
    from ubertruck_ops.deployments.registry import get_flow

    flow = get_flow(name)
    accepted = set(flow.parameters.properties)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"flow {name} has no parameter(s) {', '.join(unknown)}; it takes: {', '.join(sorted(accepted))}")
    return flow


def run_flow(name: str, params: dict) -> int:
    """Run flow `name` with `params` in this process; return 0 only when the run completed."""
    flow = check_run(name, params)
    state = flow(**params, return_state=True)
    if state.is_completed():
        result = state.result()
        print(json.dumps(result, indent=2, default=str) if result is not None else f"{name}: completed")
        return 0
    print(f"{name}: {state.type.value}: {state.message}", file=sys.stderr)
    return 1


def wal_archive(environment: str) -> int:
    """Run continuous WAL archiving (tasks/wal_stream.py) until SIGINT or SIGTERM.

    Exit status 0 once stopped by a signal (what the repository did not take stays in the spool for
    the next start); 3 when it must not run: another archiver holds the slot or the spool, or the
    spool is not private (the sentence says which); 1 on anything else. A failing repository or an
    unreachable database never ends it: it retries, logs, posts to Slack and pings /fail.
    """
    import logging
    import signal

    from ubertruck_ops.blocks.environment import load_environment
    from ubertruck_ops.tasks.repository import open_repository
    from ubertruck_ops.tasks.wal_stream import ArchiverRefused, WalStreamer

    # Outside a flow run the project's log goes nowhere by default: the archiver's is its story.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    # Not the zstd and gpg of every segment's push (tasks/execute logs each start): the archiver says
    # what it archived instead.
    handler.addFilter(lambda record: not (record.msg == "starting %s: %s" and record.args
                                          and record.args[0] != "pg_receivewal"))
    log = logging.getLogger("ubertruck_ops")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    env = load_environment(environment)
    # Few attempts per request: the archiver retries a failing push itself, with backoff, for ever.
    streamer = WalStreamer(env, open_repository(env.repository, attempts=3), environment=environment)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: streamer.stop())
    print(f"archiving WAL of {env.database.describe()} into {env.repository.url} over replication slot "
          f"{streamer.slot}, spool {streamer.spool} (SIGTERM stops)", flush=True)
    streamer.run()      # in the main thread: pg_receivewal's die-with-parent signal is tied to the thread
    if isinstance(streamer.error, ArchiverRefused):
        print(f"wal-archive refused to run: {streamer.error}", file=sys.stderr, flush=True)
        return 3
    print(f"stopped after archiving {streamer.archived} WAL file(s)", flush=True)
    return 1 if streamer.error else 0


def wal_push(path: str, environment: str) -> int:
    """Archive one WAL file; exit non-zero on any failure so PostgreSQL keeps it and retries.

    PostgreSQL starts one of these per segment, so it never starts a Prefect API (13-15 s) nor
    imports Prefect (~1.5 s): it reads the environment's blocks from the API in PREFECT_API_URL
    over HTTP, and refuses without one (tasks/wal_push.py).
    """
    from ubertruck_ops.tasks.wal_push import push_wal

    try:
        outcome = push_wal(path, environment)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL only sees the exit status; the log gets the reason
        print(f"wal-push {os.path.basename(path)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wal-push {os.path.basename(path)}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
