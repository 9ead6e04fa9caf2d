"""The Prefect API servers this project starts, and `ubertruck-ops serve`.

`serve` is the single-machine default: without PREFECT_API_URL it starts a local Prefect server
(SQLite under PREFECT_HOME, UI on 127.0.0.1), creates the concurrency limits and serves every
deployment with its schedule until Ctrl-C or SIGTERM, then stops what it started.

`private_api()` is what `ubertruck-ops run` (and the other commands) use without PREFECT_API_URL,
in place of Prefect's ephemeral API: the same server (SQLite under PREFECT_HOME, no UI, no
services, so no schedules), but started by us as a child that the kernel stops when we die, even
by SIGKILL - Prefect's own ephemeral server outlives a killed run (parent 1, ~220 MB each).

Every server we start authenticates every request (Prefect's basic auth): a random string kept in
PREFECT_HOME/api-auth-string (0600), handed to the server and to our clients by environment, never
argv. Every server we start also keeps its concurrency leases on disk under PREFECT_HOME, so a lease
outlives the API process that granted it and the next run can release a killed holder's slot.

Nobody else gets the auth string by taking the port first: we bind the server's listening socket
ourselves (a taken port is refused, naming its holder, before anything is sent) and hold it until
the server is stopped; the server process (deployments/api_server.py) serves on that socket. A
PREFECT_API_URL given to us is checked the same way before the first request: its address on this
host must be held by a user we trust (tasks/api_identity.py).
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from ubertruck_ops.tasks.api_identity import check_api, held_by, listen_on, trusted_users
from ubertruck_ops.tasks.execute import spawn, stop

SERVER_START_SECONDS = 180      # the first start migrates the SQLite database
AUTH_FILE = "api-auth-string"
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
API_SERVER = "ubertruck_ops.deployments.api_server"     # the module our server processes run
# The API URL of the private server this process started (tasks/locks.py records it with a lease).
PRIVATE_API_VARIABLE = "UBERTRUCK_PRIVATE_API_URL"
EXIT_GRACE_SECONDS = 20         # how long `serve` may take to exit once it stopped serving


def prefect_home() -> Path:
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def auth_file() -> Path:
    return prefect_home() / AUTH_FILE


def api_auth_string() -> str:
    """Return the auth string of the servers we start: from PREFECT_HOME/api-auth-string, created
    (random, 0600) on first use. A file others can read is made private again and the value kept."""
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / AUTH_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if os.fstat(fd).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                os.fchmod(fd, 0o600)
            value = os.read(fd, 4096).decode().strip()
        finally:
            os.close(fd)
        if not value:
            raise RuntimeError(f"{path} is empty: delete it and start again (a new auth string is made)")
        return value
    value = f"ubertruck:{secrets.token_urlsafe(32)}"
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return value


def server_env(auth: str) -> dict[str, str]:
    """The environment of a Prefect server we start: our PREFECT_* settings, its auth string,
    leases on disk; no client-side API address or credentials."""
    from prefect.settings import get_current_settings

    env = {name: os.environ[name] for name in os.environ if name.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    env.update(get_current_settings().to_environment_variables(exclude_unset=True))
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", PRIVATE_API_VARIABLE):
        env.pop(name, None)
    env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", LEASE_STORAGE)
    return env


def _start_server(name: str, host: str, port: int, auth: str, env: dict[str, str], timeout: float):
    """Bind host:port, start our API server process on that socket, return (process, api_url) once it
    answers. The process keeps our copy of the socket (process.listener) until `_stop` closes it."""
    listener = listen_on(host, port)
    port = listener.getsockname()[1]
    api = f"http://{f'[{host}]' if ':' in host else host}:{port}/api"
    env = {**env, "PREFECT_SERVER_UI_API_URL": api, "PREFECT_UI_URL": api.removesuffix("/api")}
    if os.environ.get("PYTHONPATH"):        # the server runs the same code as the process that starts it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    try:
        process = spawn(name, [sys.executable, "-m", API_SERVER, "--fd", str(listener.fileno()), "--host", host,
                               "--port", str(port)], env=env, secrets=[auth], die_with_parent=True,
                        pass_fds=[listener.fileno()])
    except BaseException:
        listener.close()
        raise
    process.listener = listener
    try:
        wait_for_api(api, process, timeout)
    except BaseException:
        _stop(process)
        raise
    return process, api


def start_local_server(host: str, port: int, auth: str):
    """Start `serve`'s Prefect server (what `prefect server start` runs: API, UI, services) on host:port
    requiring `auth`; return (process, api_url) once it answers. Raise UntrustedApi when someone else
    holds the port, RuntimeError when the server does not come up."""
    # The UI calls the API address it is told (PREFECT_SERVER_UI_API_URL, else port 4200's) and the
    # automations' run links need PREFECT_UI_URL: _start_server sets both to where it listens.
    return _start_server("Prefect server", host, port, auth, server_env(auth), SERVER_START_SECONDS)


def wait_for_api(api: str, process, seconds: float) -> None:
    """Return once the Prefect API at `api` answers its health check from a socket that `process` (the
    server we started) or one of its children holds. Raise UntrustedApi, before any request, when
    another process listens on that address; RuntimeError when `process` exits first or `seconds`
    pass, with the last connection error."""
    url = httpx.URL(api)
    ours: set[int] = set()
    deadline = time.monotonic() + seconds
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with status {process.returncode} "
                               f"(is its port already in use? try --port)")
        if not held_by(url.host, url.port, process.pid, ours):
            time.sleep(0.1)         # not listening yet
            continue
        try:
            reply = httpx.get(f"{api}/health", timeout=2)
            if reply.status_code == 200:
                return
            last = f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"     # refused while it starts: try again
        time.sleep(0.1)
    raise RuntimeError(f"the Prefect server did not answer on {api} within {seconds:.0f} s ({last})")


def use_api_from_environment() -> None:
    """With PREFECT_API_URL set: check, before anything is sent to it or believed from it, that a
    server of a user we trust holds its address when that is on this host (tasks/api_identity.py;
    raise UntrustedApi otherwise). Then, when it is on this machine and no PREFECT_API_AUTH_STRING
    is set, use the auth string `serve` keeps under PREFECT_HOME (so operators' commands reach the
    API `serve` started). The local string never goes to another host's URL."""
    api = os.environ.get("PREFECT_API_URL", "")
    if not api:
        return
    check_api(api, trusted_users(auth_file=auth_file()))
    host = httpx.URL(api).host
    if host in ("127.0.0.1", "localhost", "::1") and not os.environ.get("PREFECT_API_AUTH_STRING") \
            and auth_file().is_file():
        os.environ["PREFECT_API_AUTH_STRING"] = api_auth_string()


_use_local_auth_file = use_api_from_environment      # the name before the identity check


@contextmanager
def private_api() -> Iterator[str | None]:
    """Without PREFECT_API_URL: start a private Prefect API for this process (our own stand-in for
    Prefect's ephemeral API) that dies with it, point this process's clients at it, stop it at the
    end. With PREFECT_API_URL: use that, once its identity is checked (with the local auth string
    when it is on this machine). Yield the API URL of the server started, or None."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    if os.environ.get("PREFECT_API_URL"):
        use_api_from_environment()
        if os.environ.get("PREFECT_API_AUTH_STRING"):
            with temporary_settings({PREFECT_API_AUTH_STRING: os.environ["PREFECT_API_AUTH_STRING"]}):
                yield None
        else:
            yield None
        return
    auth = api_auth_string()
    env = server_env(auth)
    # As Prefect's ephemeral server: no UI, no services (schedules need `serve` or a worker).
    env.update({"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"})
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", SERVER_START_SECONDS))
    # Port 0: the kernel picks a free port as we bind it, and we hold it from then on.
    process, api = _start_server("Prefect API", "127.0.0.1", 0, auth, env, timeout)
    saved = {name: os.environ.get(name) for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING",
                                                     PRIVATE_API_VARIABLE)}
    os.environ.update({"PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": auth, PRIVATE_API_VARIABLE: api})
    try:
        with temporary_settings({PREFECT_API_URL: api, PREFECT_API_AUTH_STRING: auth}):
            try:
                yield api
            finally:
                _flush_to_api()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _stop(process)


def _flush_to_api() -> None:
    """Send the run's queued logs and events while the server that takes them still runs."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    for flush in (lambda: APILogHandler().flush(), lambda: EventsWorker.drain_all(timeout=5)):
        try:
            flush()
        except Exception:  # noqa: BLE001 - a lost log line must not change the run's exit status
            pass


def _stop(process) -> None:
    stop(process, timeout=30)     # a server that will not stop is killed
    listener = getattr(process, "listener", None)
    if listener is not None:
        listener.close()          # only now may the port go to someone else


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
                _flush_to_api()     # while the server still takes them: nothing left to send at exit
            _stop(server)
        _exit_after_grace(EXIT_GRACE_SECONDS, 1 if died.is_set() or sys.exc_info()[0] is not None else 0)
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
