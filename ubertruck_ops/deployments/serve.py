"""`ubertruck-ops serve`: the single-machine default. Without PREFECT_API_URL it starts a local
Prefect server (SQLite under PREFECT_HOME, UI on 127.0.0.1), creates the concurrency limits and
serves every deployment with its schedule until Ctrl-C or SIGTERM, then stops what it started."""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx

from ubertruck_ops.tasks.execute import spawn

SERVER_START_SECONDS = 180      # the first start migrates the SQLite database


def start_local_server(host: str, port: int):
    """Start `prefect server start` on host:port; return (process, api_url) once it answers.
    Raise RuntimeError when it does not come up."""
    env = {name: os.environ[name] for name in os.environ if name.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    env.pop("PREFECT_API_URL", None)
    process = spawn("Prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host", host,
                                       "--port", str(port)], env=env)
    api = f"http://{host}:{port}/api"
    try:
        wait_for_api(api, process, SERVER_START_SECONDS)
    except RuntimeError:
        process.terminate()
        raise
    return process, api


def wait_for_api(api: str, process, seconds: float) -> None:
    """Return once the Prefect API at `api` answers its health check. Raise RuntimeError when
    `process` (the server) exits first or `seconds` pass, with the last connection error."""
    deadline = time.monotonic() + seconds
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with status {process.returncode} "
                               f"(is its port already in use? try --port)")
        try:
            reply = httpx.get(f"{api}/health", timeout=2)
            if reply.status_code == 200:
                return
            last = f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"     # refused while it starts: try again
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server did not answer on {api} within {seconds:.0f} s ({last})")


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def serve_everything(environment: str, host: str, port: int) -> int:
    """Serve every deployment of `environment` (starting a local server when PREFECT_API_URL is unset)."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ubertruck_ops.deployments.schedules import runner_deployments
    from ubertruck_ops.deployments.setup import ensure_concurrency_limits

    server = None
    api = os.environ.get("PREFECT_API_URL")
    # SIGTERM (systemd, docker stop) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not api:
            print(f"starting a local Prefect server on http://{host}:{port} (SQLite under PREFECT_HOME)", flush=True)
            server, api = start_local_server(host, port)
        with temporary_settings({PREFECT_API_URL: api}):
            ensure_concurrency_limits()
            deployments = runner_deployments(environment)
            print(f"serving {len(deployments)} deployments of {environment} against {api}; "
                  f"UI: {api.removesuffix('/api')}; Ctrl-C stops", flush=True)
            serve(*deployments, print_starting_message=False)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except Exception:  # noqa: BLE001 - a server that will not stop is killed
                server.kill()
    return 0
