"""Locks and killed runs as cron sees them (issue 11, items 3 and 11): each backup is its own
`ubertruck-ops run` process with its own PREFECT_HOME and no PREFECT_API_URL."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.flows.nightly_backup import nightly_backup

from tests.helpers import save_env
from tests.parts import flow_run_logs, processes

PROJECT = Path(__file__).resolve().parents[1]
UBERTRUCK_OPS = PROJECT / ".venv" / "bin" / "ubertruck-ops"


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _api_servers_of(home: Path) -> list[int]:
    """Prefect API servers (ours or Prefect's ephemeral one) working on PREFECT_HOME `home`."""
    return [pid for pid, (_, cmd) in processes().items()
            if ("uvicorn" in cmd or "ubertruck_ops.deployments.api_server" in cmd
                or "prefect server start" in cmd.replace("-m prefect", "prefect"))
            and f"PREFECT_HOME={home}\0" in _environ(pid)]


def _agents_of(home: str) -> list[int]:
    return [pid for pid, (_, cmd) in processes().items() if "gpg-agent" in cmd and home in cmd]


def _wait(condition, seconds: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the run exited first ({process.returncode})")
        time.sleep(0.05)
    pytest.fail(f"{what}: not within {seconds:.0f} s")


@pytest.fixture
def cron(tmp_path, pg18, source_db, local_repo):
    """A host as cron sees it: its own PREFECT_HOME (no PREFECT_API_URL), TMPDIR and state folder, and an
    environment whose blocks `ubertruck-ops blocks init --env-file` saved there."""
    base = Path(tempfile.mkdtemp(prefix="ut-cron-"))       # short: gpg-agent's socket path must fit
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    env.update(PREFECT_HOME=str(base / "home"), TMPDIR=str(base / "tmp"), UBERTRUCK_STATE_DIR=str(base / "state"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    (base / "tmp").mkdir()
    db = source_db
    env_file = tmp_path / "cron.env"
    env_file.write_text(f"DATABASE_URL=postgresql://{db.user}:{db.password.get_secret_value()}@127.0.0.1:{db.port}/"
                        f"{db.database}\nBACKUP_ENCRYPTION_KEY=cron-passphrase\nBACKUP_REPOSITORY={local_repo}\n"
                        f"APP_ROOT={tmp_path / 'no-app'}\n")
    init = subprocess.run([UBERTRUCK_OPS, "blocks", "init", "--env-file", env_file, "--name", "prod"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr[-3000:]
    yield {"env": env, "base": base, "home": base / "home", "tmp": base / "tmp", "db": db, "pg": pg18,
           "lock": base / "state" / "prod" / "ubertruck-backup.lock", "repo": local_repo}
    for pid in _api_servers_of(base / "home"):          # only if a test failed half-way
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def _hold_a_table(pg18, db):
    """Lock one of the database's tables so a backup blocks while counting rows (holding the backup
    lock and its gpg session) until the returned connection rolls back."""
    admin = psycopg.connect(**pg18.database().connect_kwargs(db.database))
    table = admin.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'core' "
                          "ORDER BY 1 LIMIT 1").fetchone()[0]
    admin.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    return admin


def test_a_cron_backup_killed_holding_the_lock_leaves_no_server_or_gnupg_home_and_the_next_one_runs_at_once(cron):
    env, home = cron["env"], cron["home"]
    auth = (home / "api-auth-string").read_text().strip()
    admin = _hold_a_table(cron["pg"], cron["db"])
    first_err = open(cron["base"] / "first.err", "wb")
    first = subprocess.Popen([UBERTRUCK_OPS, "run", "nightly-backup", "--param", "environment=prod"], env=env,
                             stdout=subprocess.DEVNULL, stderr=first_err)
    try:
        _wait(lambda: cron["lock"].exists() and "lease_id" in cron["lock"].read_text(), 240,
              "the first backup never took the lock", first)
        gnupg = _wait(lambda: list(cron["tmp"].glob(f"ubertruck-gnupg-{first.pid}-*")), 60,
                      "the first backup opened no gpg session", first)[0]
        servers = [pid for pid, (parent, _) in processes().items() if parent == first.pid and pid in
                   _api_servers_of(home)]
        assert len(servers) == 1, "the run should start exactly one API server of its own"
        # The run's own API answers only with the auth string, and the string is on no command line.
        port = re.search(r"--port (\d+)", processes()[servers[0]][1]).group(1)
        api = f"http://127.0.0.1:{port}/api"
        assert httpx.post(f"{api}/block_documents/filter", json={}, timeout=10).status_code == 401
        assert httpx.post(f"{api}/block_documents/filter", json={}, auth=tuple(auth.split(":", 1)),
                          timeout=10).status_code == 200
        assert not [pid for pid, (_, cmd) in processes().items() if auth in cmd]
        # The killed session's gpg-agent (one is running while a backup encrypts).
        subprocess.run(["gpg-connect-agent", "--homedir", str(gnupg), "/bye"], env={**env, "GNUPGHOME": str(gnupg)},
                       capture_output=True, timeout=30, check=True)
        assert _agents_of(str(gnupg))

        os.kill(first.pid, signal.SIGKILL)          # the process only, as the OOM killer would
        first.wait(timeout=30)
    finally:
        admin.rollback()
        admin.close()
        first_err.close()
        if first.poll() is None:
            first.kill()
    _wait(lambda: not _api_servers_of(home), 20, "the killed run's API server is still running")
    record = json.loads(cron["lock"].read_text())
    assert record["pid"] == first.pid and record["lease_id"]

    clock = time.monotonic()
    second = subprocess.run([UBERTRUCK_OPS, "run", "nightly-backup", "--param", "environment=prod"], env=env,
                            capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - clock
    assert second.returncode == 0, second.stderr[-4000:]
    waited = float(re.search(r"took the ubertruck-backup lock after waiting ([\d.]+) s", second.stderr).group(1))
    print(f"\nthe next backup waited {waited:.1f} s for the lock; the whole run took {elapsed:.1f} s")
    assert waited < 30
    assert "left by nightly backup of prod" in second.stderr
    assert json.loads(cron["lock"].read_text()) == {}
    assert len(list(cron["repo"].rglob("manifest.json"))) == 1
    assert not list(cron["tmp"].glob("ubertruck-gnupg-*")), "a gnupg home of a dead run is left"
    assert not _agents_of(str(gnupg)), "the dead run's gpg-agent still runs"
    assert not _api_servers_of(home), "an API server outlived its run"


READ_RUNS = """
import json
from prefect.client.orchestration import get_client
from ubertruck_ops.deployments.serve import private_api
with private_api():
    with get_client(sync_client=True) as client:
        print(json.dumps({str(r.id): r.state.type.value for r in client.read_flow_runs(limit=50)}))
"""


def test_sigterm_to_a_cron_backup_waiting_for_the_lock_ends_its_run_crashed_and_exits_non_zero(cron):
    import fcntl

    env = cron["env"]
    cron["lock"].parent.mkdir(parents=True, exist_ok=True)
    holder = os.open(cron["lock"], os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)            # another backup holds the lock
    errors = open(cron["base"] / "waiting.err", "w+")
    waiting = subprocess.Popen([UBERTRUCK_OPS, "run", "nightly-backup", "--param", "environment=prod"], env=env,
                               stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True)
    try:
        _wait(lambda: "step: wait for the backup lock" in (cron["base"] / "waiting.err").read_text(), 240,
              "the backup never started waiting", waiting)
        time.sleep(1)
        os.killpg(waiting.pid, signal.SIGTERM)     # as systemd or a cron timeout stops the whole group
        waiting.wait(timeout=60)
    finally:
        os.close(holder)
        errors.close()
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode != 0
    _wait(lambda: not _api_servers_of(cron["home"]), 20, "the stopped run's API server is still running")
    states = subprocess.run([str(PROJECT / ".venv" / "bin" / "python"), "-c", READ_RUNS], env=env,
                            capture_output=True, text=True, timeout=300)
    assert states.returncode == 0, states.stderr[-3000:]
    assert list(json.loads(states.stdout.strip().splitlines()[-1]).values()) in (["CRASHED"], ["CANCELLED"]), \
        states.stdout


def test_a_backup_waiting_for_the_lock_says_who_holds_it_every_interval(source_db, local_repo, monkeypatch):
    import fcntl

    from ubertruck_ops.tasks import locks

    monkeypatch.setattr(locks, "LOCK_WAIT_LOG_SECONDS", 1)
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    lock = Path(os.environ["UBERTRUCK_STATE_DIR"]) / env / "ubertruck-backup.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    holder = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    os.write(holder, json.dumps({"holder": "incremental backup of the test", "pid": 4242}).encode())
    # The holder finishes once the waiting run has said twice who holds the lock (however slow the
    # machine is to get the run there): a fixed timer raced the flow's start-up under load.
    describe, reports = locks._describe, []

    def describe_then_release(data):
        reports.append(data)
        if len(reports) == 2:
            threading.Timer(0.5, os.close, args=(holder,)).start()
        return describe(data)

    monkeypatch.setattr(locks, "_describe", describe_then_release)
    state = nightly_backup(environment=env, return_state=True)
    assert state.is_completed(), state.message
    logs = flow_run_logs(state)
    waiting = [line for line in logs.splitlines() if line.startswith("waiting for the ubertruck-backup lock")]
    assert len(waiting) >= 2, logs
    assert all("held on this host by incremental backup of the test (pid 4242" in line for line in waiting)
    assert re.search(r"took the ubertruck-backup lock after waiting [3-9]\.\d s", logs)


def test_the_lease_is_renewed_with_the_api_that_granted_it_not_whatever_a_bare_thread_finds():
    """A run's settings (its API, its auth) live in context variables: a renewal thread that lost them
    renewed against another API, heard 404 and interrupted a healthy deploy (seen in the demo)."""
    from http.server import BaseHTTPRequestHandler

    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, temporary_settings

    from ubertruck_ops.tasks import locks

    from tests.parts import _Server

    class Renewals(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            """Quiet."""

        def do_POST(self) -> None:
            self.server.owner.paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:     # the client asks the server's version when it opens
            import prefect

            body = json.dumps(prefect.__version__).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class RenewalReceiver(_Server):
        handler = Renewals
        paths: list[str] = []

    receiver = RenewalReceiver().start()
    lease = "6b1f0c52-3d4e-4b8e-9a51-0c1d2e3f4a5b"
    path = Path(tempfile.mkdtemp(prefix="ut-renewal-")) / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with temporary_settings({PREFECT_API_URL: f"{receiver.url}/api", PREFECT_CLIENT_CSRF_SUPPORT_ENABLED: False}):
            renewal = locks._Renewal(fd, {"lease_id": lease, "until": time.time() + 60}, 0.6, "ubertruck-test")
            deadline = time.monotonic() + 10
            while not receiver.paths and time.monotonic() < deadline:
                time.sleep(0.1)
            renewal.stop()
    finally:
        os.close(fd)
        receiver.stop()
    assert receiver.paths and all(lease in p and p.endswith("/renew") for p in receiver.paths), receiver.paths


HOLD_HOST_LOCK = """
import sys, time
from ubertruck_ops.tasks.locks import flock_only
with flock_only(sys.argv[1], "ubertruck-deploy", 5, holder="go-live on web-2, flow run killed"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_host_step_killed_holding_its_host_lock_frees_it_and_a_waiting_step_says_who_holds_it(tmp_path):
    from ubertruck_ops.tasks.locks import flock_only

    folder = tmp_path / "shared"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_HOST_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match="go-live on web-2, flow run killed"):
            with flock_only(folder, "ubertruck-deploy", 1, holder="second"):
                pass
        assert oct((folder / "ubertruck-deploy.lock").stat().st_mode & 0o777) == "0o600"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        with flock_only(folder, "ubertruck-deploy", 5, holder="next"):
            assert time.monotonic() - started < 1           # the kernel dropped the dead step's lock
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_symlink_planted_as_the_host_lock_file_is_refused(tmp_path):
    from ubertruck_ops.tasks.locks import flock_only

    folder = tmp_path / "shared"
    folder.mkdir()
    target = tmp_path / "victim"
    target.write_text("keep me")
    (folder / "ubertruck-deploy.lock").symlink_to(target)    # another local user's trap
    with pytest.raises(OSError):
        with flock_only(folder, "ubertruck-deploy", 1, holder="step"):
            pass
    assert target.read_text() == "keep me"


HOLD_THE_BACKUP_SLOT = """
import sys
from ubertruck_ops.core.limits import BACKUP_LOCK
from ubertruck_ops.tasks.locks import host_lock
with host_lock(sys.argv[1], BACKUP_LOCK, 60, 300, holder="nightly backup of prod on host-a"):
    print("held", flush=True)
    sys.stdin.read()          # until the test closes our stdin
"""


def _backup_slots_taken() -> int:
    from prefect.client.orchestration import get_client

    from ubertruck_ops.core.limits import BACKUP_LOCK

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(BACKUP_LOCK).active_slots


def _stale_record(api: str, private: bool) -> dict:
    import uuid

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return {"lease_id": str(uuid.uuid4()), "holder": "nightly backup of prod, flow run killed",
            "pid": int(dead.stdout), "api": api, "private_api": private, "since": time.time() - 60,
            "until": time.time() + 240}


def test_a_stale_lock_of_a_killed_private_api_run_never_frees_the_slot_a_live_run_on_another_host_holds(tmp_path):
    """Run A on host-a holds the backup slot of the shared server; on host-b a cron backup run with a
    private API was killed (its API died with it) and left its lock file. The next run on host-b
    talks to the shared server: it must wait for A, not give A's slot back by name and enter."""
    from prefect.settings import PREFECT_API_URL

    from ubertruck_ops.core.limits import BACKUP_LOCK
    from ubertruck_ops.tasks.locks import host_lock

    api = PREFECT_API_URL.value().rstrip("/")
    assert _backup_slots_taken() == 0
    host_a = subprocess.Popen([sys.executable, "-c", HOLD_THE_BACKUP_SLOT, str(tmp_path / "host-a")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PREFECT_API_URL": api})
    try:
        assert host_a.stdout.readline().strip() == "held"
        assert _backup_slots_taken() == 1
        host_b = tmp_path / "host-b"
        host_b.mkdir()
        # what a killed `ubertruck-ops run` left: its private API's lease, renewed a minute ago
        (host_b / f"{BACKUP_LOCK}.lock").write_text(json.dumps(_stale_record("http://127.0.0.1:1/api", True)))
        entered = False
        with pytest.raises(TimeoutError, match="stayed taken by another backup"):
            with host_lock(host_b, BACKUP_LOCK, 4, 300, holder="nightly backup of prod on host-b", what="backup"):
                entered = True
        assert not entered, "run B entered the backup lock while run A held it"
        assert _backup_slots_taken() == 1 and host_a.poll() is None, "run A's slot was given away"
    finally:
        host_a.stdin.close()           # A finishes and releases its slot
        host_a.wait(timeout=60)
    assert host_a.returncode == 0
    assert _backup_slots_taken() == 0


def test_a_stale_lock_whose_lease_this_server_lost_unexpired_gives_back_that_one_slot_and_the_next_run_enters(
        tmp_path):
    """The slot a server still counts for a dead holder whose lease it lost (a server keeping leases in
    memory restarted) is given back by name: otherwise every later backup would wait for ever."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from ubertruck_ops.core.limits import BACKUP_LOCK
    from ubertruck_ops.tasks.locks import host_lock

    api = PREFECT_API_URL.value().rstrip("/")
    with get_client(sync_client=True) as client:       # the dead holder's slot, its lease gone
        client.increment_concurrency_slots([BACKUP_LOCK], 1, "concurrency")
    assert _backup_slots_taken() == 1
    (tmp_path / f"{BACKUP_LOCK}.lock").write_text(json.dumps(_stale_record(api, False)))
    started = time.monotonic()
    with host_lock(tmp_path, BACKUP_LOCK, 30, 300, holder="nightly backup of prod", what="backup"):
        assert _backup_slots_taken() == 1
    assert time.monotonic() - started < 10
    assert _backup_slots_taken() == 0
