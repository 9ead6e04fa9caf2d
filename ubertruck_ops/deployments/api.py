"""The Prefect API servers this project starts, and how our clients reach an API they can trust.

`private_api()` is what `ubertruck-ops run` (and the other commands) use without PREFECT_API_URL,
in place of Prefect's ephemeral API: the same server (SQLite under PREFECT_HOME, no UI, no
services, so no schedules), but started by us as a child that the kernel stops when we die, even
by SIGKILL - Prefect's own ephemeral server outlives a killed run (parent 1, ~220 MB each).
`start_local_server()` starts `serve`'s (deployments/serve.py): API, UI and services.

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
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ubertruck_ops.tasks.api_identity import (
    AUTH_FILE,
    PRIVATE_API_VARIABLE,
    check_api,
    held_by,
    listen_on,
    trusted_users,
)
from ubertruck_ops.tasks.execute import spawn, stop

SERVER_START_SECONDS = 180      # the first start migrates the SQLite database
LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
API_SERVER = "ubertruck_ops.deployments.api_server"     # the module our server processes run


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
            raise RuntimeError(f"{path} is empty: delete it and start again (a new auth string is made)") from None
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
    answers. The process keeps our copy of the socket (process.listener) until `stop_server` closes it."""
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
        stop_server(process)
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


@contextmanager
def private_api() -> Iterator[str | None]:
    """Without PREFECT_API_URL: start a private Prefect API for this process (our own stand-in for
    Prefect's ephemeral API) that dies with it, point this process's clients at it, stop it at the
    end. With PREFECT_API_URL: use that, once its identity is checked (with the local auth string
    when it is on this machine). Yield the API URL of the server started, or None."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        temporary_settings,
    )

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
                flush_to_api()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stop_server(process)


def flush_to_api() -> None:
    """Send the run's queued logs and events while the server that takes them still runs."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    for flush in (lambda: APILogHandler().flush(), lambda: EventsWorker.drain_all(timeout=5)):
        try:
            flush()
        except Exception:  # noqa: BLE001, S110 - a lost log line must not change the run's exit status
            pass


def stop_server(process) -> None:
    """Stop a server we started, then give up its port."""
    stop(process, timeout=30)     # a server that will not stop is killed
    listener = getattr(process, "listener", None)
    if listener is not None:
        listener.close()          # only now may the port go to someone else
