"""`ubertruck-ops serve`: the single-machine default. Without PREFECT_API_URL it starts a local
Prefect server (SQLite under PREFECT_HOME, UI on 127.0.0.1; deployments/api.py starts it and keeps
its auth string), creates the concurrency limits and serves every deployment with its schedule until
Ctrl-C or SIGTERM, then stops what it started.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

# wait_for_api and private_api are re-exported: their callers have always found them here.
from ubertruck_ops.deployments.api import (
    api_auth_string,
    auth_file,
    flush_to_api,
    private_api,
    start_local_server,
    stop_server,
    use_api_from_environment,
    wait_for_api,
)

__all__ = ["private_api", "serve_everything", "unscheduled_flows", "wait_for_api"]
EXIT_GRACE_SECONDS = 20         # how long `serve` may take to exit once it stopped serving


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def unscheduled_flows(environment: str) -> frozenset[str]:
    """The flows `serve` leaves without a schedule: incremental-backup when the tier `blocks init`
    recorded says none applies (said here, once, instead of a failed run every 6 hours)."""
    from ubertruck_ops.deployments.setup import recorded_tier, unscheduled_by

    tier = recorded_tier(environment)
    unscheduled = unscheduled_by(tier)
    for flow in sorted(unscheduled):
        print(f"{flow} of {environment} is not scheduled: {tier.why}", file=sys.stderr, flush=True)
    return unscheduled


def serve_everything(environment: str, host: str, port: int) -> int:
    """Serve every deployment of `environment` (starting a local server when PREFECT_API_URL is unset)."""
    from prefect import serve
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from ubertruck_ops.deployments.schedules import runner_deployments
    from ubertruck_ops.deployments.setup import ensure_alerts, ensure_concurrency_limits

    server = None
    api = os.environ.get("PREFECT_API_URL")
    stopping, died = threading.Event(), threading.Event()
    # SIGTERM (systemd, docker stop) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    _stop_on_sigint_as_on_sigterm()
    try:
        if not api:
            auth = os.environ.get("PREFECT_SERVER_API_AUTH_STRING") or api_auth_string()
            print(f"starting a local Prefect server on http://{host}:{port} (SQLite under PREFECT_HOME); "
                  f"its API and UI ask for the auth string kept in {auth_file()} "
                  f"(clients: export PREFECT_API_AUTH_STRING=\"$(cat {auth_file()})\")", flush=True)
            server, api = start_local_server(host, port, auth)
            threading.Thread(target=_stop_when_server_exits, args=(server, stopping, died), daemon=True,
                             name="server-watch").start()
            # The runs `serve` starts inherit the environment: their clients authenticate too.
            os.environ["PREFECT_API_AUTH_STRING"] = auth
        else:
            os.environ["PREFECT_API_URL"] = api
            use_api_from_environment()
        settings = {PREFECT_API_URL: api}
        if os.environ.get("PREFECT_API_AUTH_STRING"):
            settings[PREFECT_API_AUTH_STRING] = os.environ["PREFECT_API_AUTH_STRING"]
        with temporary_settings(settings):
            ensure_concurrency_limits()
            for line in ensure_alerts(environment):
                print(line, flush=True)
            deployments = runner_deployments(environment, unscheduled_flows(environment))
            print(f"serving {len(deployments)} deployments of {environment} against {api}; "
                  f"UI: {api.removesuffix('/api')}; Ctrl-C stops", flush=True)
            # Stopping serve leaves the schedules on: on a shared server (or when workers replace
            # serve) pausing them would silently stop every scheduled job; while nothing runs them,
            # the "missing" automations post to Slack.
            serve(*deployments, print_starting_message=False, pause_on_shutdown=False)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        stopping.set()
        if server is not None:
            if server.poll() is None:
                flush_to_api()     # while the server still takes them: nothing left to send at exit
            stop_server(server)
        if not died.is_set():      # a dead server armed the grace period when it was seen
            _exit_after_grace(EXIT_GRACE_SECONDS, 1 if sys.exc_info()[0] is not None else 0)
    return 1 if died.is_set() else 0


def _stop_when_server_exits(process, stopping: threading.Event, died: threading.Event) -> None:
    """Stop `serve` (exit status 1, for systemd to restart it) when the server it started exits on its
    own: serving on against a dead server helps nobody. Until serve exits it still holds the
    server's listening socket, so no one else can take the port and collect the auth string its
    runner sends."""
    process.wait()
    if stopping.is_set():
        return
    died.set()
    print(f"the Prefect server (pid {process.pid}) exited with status {process.returncode}: stopping serve",
          file=sys.stderr, flush=True)
    # The Runner's own stop talks to the API, and its client retries a dead server with back-off for
    # longer than systemd should wait: the grace period starts now, not once serve() has returned.
    _exit_after_grace(EXIT_GRACE_SECONDS, 1)
    os.kill(os.getpid(), signal.SIGTERM)


# Why Ctrl-C could leave `serve` running (issue 23: still up 8 min after SIGINT, its server gone,
# exited at once on SIGTERM). On SIGINT asyncio.run() cancels its main task and waits for the
# cancellation to unwind through Prefect's Runner, and at exit Prefect's log and event workers may
# still wait to send to a server already stopped. So: SIGINT takes SIGTERM's path (the Runner's own
# graceful stop once it runs, KeyboardInterrupt before), the queued logs and events are sent while the
# server is still up, and a watchdog ends the process if something still holds it EXIT_GRACE_SECONDS
# after serving stopped.

def _stop_on_sigint_as_on_sigterm() -> None:
    """Make SIGINT do what SIGTERM does at the moment it arrives (the handler installed last: ours, or
    Prefect's Runner's once it runs). asyncio.run() leaves a handler that is not Python's default alone."""
    def on_sigint(signum, frame) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler):
            handler(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def _exit_after_grace(seconds: float, status: int) -> None:
    """End this process with `status` `seconds` from now unless it has exited by then: a daemon thread,
    so it never holds the process itself."""
    def exit_late() -> None:
        time.sleep(seconds)
        print(f"serve still running {seconds:.0f} s after it stopped serving: exiting", file=sys.stderr, flush=True)
        os._exit(status)

    threading.Thread(target=exit_late, daemon=True, name="exit-grace").start()
