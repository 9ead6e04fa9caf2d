"""Issue 22, item 7: a local user who listens on the Prefect API's port first gets nothing. Our
clients know they talk to our server before they send the auth string or believe an answer.

The squatter is real: a small HTTP server run as `nobody` on 127.0.0.1, answering 200 to everything
(block reads with an encryption key and a repository of its own) and recording every request with
its Authorization header."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ubertruck_ops.deployments.serve import wait_for_api
from ubertruck_ops.tasks.api_identity import process_tree

from tests.helpers import require
from tests.parts import processes

PROJECT = Path(__file__).resolve().parents[1]
UBERTRUCK_OPS = PROJECT / ".venv" / "bin" / "ubertruck-ops"
OUTSIDER = "nobody"

SQUATTER = r"""
import http.server, json, sys
folder = sys.argv[1]
log = open(folder + "/requests.jsonl", "a")
DOCUMENTS = {"ubertruck-backup-encryption": {"passphrase": "squatter-chosen-key"},
             "ubertruck-backup-repository": {"url": folder + "/repository"}}

class Squatter(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        log.write(json.dumps({"method": self.command, "path": self.path, "body": body,
                              "authorization": self.headers.get("Authorization")}) + "\n")
        log.flush()
        parts = self.path.split("/")
        if "block_documents" in parts and "slug" in parts:
            reply = {"data": DOCUMENTS.get(parts[parts.index("slug") + 1], {})}
        else:
            reply = True if self.path.endswith("/health") else {}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Squatter)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Squatter:
    """The squatter as `nobody`: its port, its repository folder, the requests it received."""

    def __init__(self, port: int = 0):
        require(os.geteuid() == 0, "running a squatter as another local user needs root")
        require(Path("/usr/bin/python3").exists(), "the squatter runs on Debian's python3: apt-get install -y python3")
        entry = pwd.getpwnam(OUTSIDER)
        self.uid = entry.pw_uid
        self.folder = Path(tempfile.mkdtemp(prefix="ut-squatter-"))
        (self.folder / "repository").mkdir()
        for path in (self.folder, self.folder / "repository"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.process = subprocess.Popen(["/usr/bin/python3", "-c", SQUATTER, str(self.folder), str(port)],
                                        user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
                                        env={"PATH": "/usr/bin:/bin", "HOME": "/"}, stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        self.api = f"http://127.0.0.1:{self.port}/api"

    def requests(self) -> list[dict]:
        log = self.folder / "requests.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def pushed(self) -> list[str]:
        return sorted(p.name for p in (self.folder / "repository").rglob("*"))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def squatter():
    squat = Squatter()
    yield squat
    squat.stop()


@pytest.fixture
def home(tmp_path) -> Path:
    """A PREFECT_HOME whose api-auth-string `serve` made (0600, root's): what our clients would send."""
    folder = tmp_path / "prefect-home"
    folder.mkdir(mode=0o700)
    (folder / "api-auth-string").write_text(f"ubertruck:{secrets.token_urlsafe(32)}\n")
    (folder / "api-auth-string").chmod(0o600)
    return folder


def cli_env(home: Path, api: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", **extra)
    if api:
        env["PREFECT_API_URL"] = api
    return env


def assert_refused_naming_the_squatter(result: subprocess.CompletedProcess, squat: Squatter) -> None:
    said = result.stdout + result.stderr
    assert result.returncode != 0, said[-3000:]
    assert f"port {squat.port} on 127.0.0.1 is held by user {OUTSIDER} (uid {squat.uid})" in said, said[-3000:]


def test_serve_refuses_a_port_another_user_holds_and_the_squatter_gets_no_auth_string(squatter, tmp_path):
    home = tmp_path / "prefect-home"
    started = time.monotonic()
    try:
        result = subprocess.run([UBERTRUCK_OPS, "serve", "--port", str(squatter.port)], env=cli_env(home, None),
                                capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:       # the code before the fix serves against the squatter
        result = subprocess.CompletedProcess(exc.cmd, 0, exc.stdout or "", exc.stderr or "")
    print(f"\nserve refused in {time.monotonic() - started:.1f} s")
    assert [r["authorization"] for r in squatter.requests() if r["authorization"]] == []
    assert squatter.requests() == []                   # not even a health check
    assert_refused_naming_the_squatter(result, squatter)
    assert "nothing was started and no credential sent" in result.stderr


def test_wal_push_refuses_an_api_address_another_user_holds_sending_nothing_and_pushing_nothing(squatter, home,
                                                                                                  tmp_path):
    segment = tmp_path / "000000010000000000000042"
    segment.write_bytes(os.urandom(1 << 16))

    refused = subprocess.run([UBERTRUCK_OPS, "wal-push", str(segment), "--environment", "production"],
                             env=cli_env(home, squatter.api), capture_output=True, text=True, timeout=120)

    assert_refused_naming_the_squatter(refused, squatter)
    assert "UBERTRUCK_API_USER=nobody" in refused.stderr and "nothing was sent" in refused.stderr
    assert squatter.requests() == [] and squatter.pushed() == []
    # The operator who does run the API as that user says so, and then (only then) it is trusted.
    trusted = subprocess.run([UBERTRUCK_OPS, "wal-push", str(segment), "--environment", "production"],
                             env=cli_env(home, squatter.api, UBERTRUCK_API_USER=OUTSIDER), capture_output=True,
                             text=True, timeout=120)
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert [r["path"].split("?")[0].rsplit("/", 1)[1] for r in squatter.requests()] == \
        ["production-encryption", "production-repository"]


def test_run_and_blocks_init_refuse_an_api_address_another_user_holds_sending_nothing(squatter, home, tmp_path):
    sentinel = "Sentinel-passphrase-7731"
    block_env = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/d", "BACKUP_ENCRYPTION_KEY": sentinel,
                 "BACKUP_REPOSITORY": str(tmp_path / "repository")}
    run = subprocess.run([UBERTRUCK_OPS, "run", "nightly-backup", "--param", "environment=production"],
                         env=cli_env(home, squatter.api), capture_output=True, text=True, timeout=300)
    init = subprocess.run([UBERTRUCK_OPS, "blocks", "init", "--name", "production"],
                          env=cli_env(home, squatter.api, **block_env), capture_output=True, text=True, timeout=300)

    received = squatter.requests()
    assert [r for r in received if r["authorization"]] == [] and not any(sentinel in r["body"] for r in received)
    assert received == []
    for result in (run, init):
        assert_refused_naming_the_squatter(result, squatter)
        assert result.returncode == 2 and "Traceback" not in result.stderr


PRIVATE_API_ON_A_TAKEN_PORT = """
import json, sys
from ubertruck_ops.tasks import scratch_postgres
scratch_postgres.free_port = lambda: int(sys.argv[1])       # the port the code before the fix would probe
from prefect.client.orchestration import get_client
from ubertruck_ops.deployments.serve import private_api
with private_api() as api:
    with get_client(sync_client=True) as client:
        print(json.dumps({"api": api, "limits": len(client.read_global_concurrency_limits(limit=10))}))
"""


def test_the_private_api_cannot_be_squatted_it_holds_the_port_it_serves_on(squatter, home):
    result = subprocess.run([sys.executable, "-c", PRIVATE_API_ON_A_TAKEN_PORT, str(squatter.port)],
                            env=cli_env(home, None), capture_output=True, text=True, timeout=300, cwd=PROJECT)

    assert [r for r in squatter.requests() if r["authorization"]] == []
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["api"] != squatter.api and answer["limits"] == 0
    assert squatter.requests() == []


def test_waiting_for_a_server_we_started_refuses_an_address_another_user_holds(squatter):
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(ValueError) as refused:
            wait_for_api(squatter.api, ours, 20)
    finally:
        ours.kill()
        ours.wait()
    assert f"is held by user {OUTSIDER} (uid {squatter.uid}), not by the Prefect server we started" in \
        str(refused.value)
    assert squatter.requests() == []


def _bind_as_outsider(port: int) -> subprocess.CompletedProcess:
    entry = pwd.getpwnam(OUTSIDER)
    code = ("import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ntry:\n s.bind(('127.0.0.1',int(sys.argv[1]))); s.listen(1)\n"
            " print('bound')\nexcept OSError as e:\n print('refused', e.errno)")
    return subprocess.run(["/usr/bin/python3", "-c", code, str(port)], user=entry.pw_uid, group=entry.pw_gid,
                          extra_groups=[], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)


def _wait_until_dead(pid: int) -> None:
    """Until `pid` is a zombie (its parent, stopped, has not reaped it) or gone: its sockets are closed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still runs after SIGKILL")


def test_serve_holds_its_port_when_its_server_dies_and_stops_with_a_non_zero_status(tmp_path):
    from ubertruck_ops.tasks.scratch_postgres import free_port

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = open(tmp_path / "serve.log", "wb")
    serving = subprocess.Popen([UBERTRUCK_OPS, "serve", "--port", str(port)], env=cli_env(tmp_path / "home", None),
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_api(api, serving, 240)
        deadline = time.monotonic() + 180
        while "deployments of production against" not in (tmp_path / "serve.log").read_text():
            assert time.monotonic() < deadline and serving.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        tree, running = process_tree(serving.pid) - {serving.pid}, processes()
        servers = [pid for pid in tree if pid in running
                   and ("api_server" in running[pid][1] or "server start" in running[pid][1])]
        assert len(servers) == 1, servers
        os.kill(serving.pid, signal.SIGSTOP)        # serve cannot react yet: is the port still ours?
        os.kill(servers[0], signal.SIGKILL)
        _wait_until_dead(servers[0])
        squat = _bind_as_outsider(port)
        os.kill(serving.pid, signal.SIGCONT)
        status = serving.wait(timeout=60)
    finally:
        if serving.poll() is None:
            serving.kill()
            serving.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert squat.stdout.strip() == f"refused {98}", squat      # EADDRINUSE: serve still held the port
    assert status == 1, output[-3000:]
    assert f"the Prefect server (pid {servers[0]}) exited with status -9: stopping serve" in output
    with socket.socket() as probe:           # and once serve is gone the port is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
