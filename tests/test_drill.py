"""restore-drill: proves the latest backup restores, measures RTO/RPO, always cleans up."""

from __future__ import annotations

import glob
import json
import os
import tempfile

import psutil

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import MANIFEST_NAME
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore_drill import restore_drill

from tests.helpers import save_env
from tests.parts import PingReceiver, flow_run_artifacts, list_databases


def scratch_folder_prefix() -> str:
    """Where this test process's drills put their scratch servers: this worker's TMPDIR (the suite runs
    in parallel, and other workers' drills come and go meanwhile)."""
    return os.path.join(tempfile.gettempdir(), "ubertruck-pg-")


def scratch_servers() -> set[int]:
    prefix = scratch_folder_prefix()
    return {p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and any(prefix in a for a in (p.info["cmdline"] or []))}


def test_drill_restores_latest_backup_into_a_throwaway_server_and_reports(pg18, source_db, local_repo, slack):
    pings = PingReceiver().start()
    env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook(),
                   ping_url=f"{pings.url}/ping/drill-check")
    nightly_backup(environment=env)
    latest = nightly_backup(environment=env)
    del pings.pings[:]                        # the backups' own pings (tested in test_alerts)
    servers_before, folders_before = scratch_servers(), set(glob.glob(scratch_folder_prefix() + "*"))

    state = restore_drill(environment=env, return_state=True)

    assert state.is_completed()
    result = state.result()
    assert result["mode"] == "logical" and result["passed"] and result["physical"] is None
    report = result["logical"]
    assert report["backup_id"] == latest["backup_id"] and report["passed"] and report["chain"] == [latest["backup_id"]]
    assert report["rto_seconds"] > 0 and report["rpo_seconds"] >= 0 and report["tables"] == 6
    assert scratch_servers() == servers_before and set(glob.glob(scratch_folder_prefix() + "*")) == folders_before
    [artifact] = [a for a in flow_run_artifacts(state) if a.key == "restore-drill-report"]
    assert "PASSED" in artifact.data and "RTO" in artifact.data
    assert "restore drill passed" in slack.texts()[-1]
    pings.stop()
    assert [path for path, _ in pings.pings] == ["/ping/drill-check/start", "/ping/drill-check"]  # the dead man's switch


def test_drill_into_drill_database_url_server_drops_its_scratch_database(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)), drill=pg18.database())
    nightly_backup(environment=env)
    before = list_databases(pg18.database())

    report = restore_drill(environment=env)

    assert report["passed"]
    assert list_databases(pg18.database()) == before


def test_drill_fails_on_row_count_mismatch_and_still_removes_the_scratch_target(pg18, source_db, local_repo, slack):
    env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook())
    nightly_backup(environment=env)
    [manifest] = list(local_repo.rglob(MANIFEST_NAME))
    raw = json.loads(manifest.read_text())
    raw["row_counts"]["booking.bookings"] += 1
    manifest.write_text(json.dumps(raw))
    servers_before = scratch_servers()

    state = restore_drill(environment=env, return_state=True)

    assert state.is_failed()
    assert "booking.bookings: expected" in str(state.message)
    assert scratch_servers() == servers_before
    assert "restore drill FAILED" in slack.texts()[-1]
    [artifact] = [a for a in flow_run_artifacts(state) if a.key == "restore-drill-report"]
    assert "MISMATCH" in artifact.data


def test_drill_without_any_backup_fails_and_says_so(pg18, source_db, local_repo):
    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    state = restore_drill(environment=env, return_state=True)
    assert state.is_failed()
    assert "no complete logical backup" in str(state.message)


def _postmaster(folder) -> tuple[int, str] | None:
    """(pid, status) from a scratch folder's postmaster.pid, when there is one."""
    from pathlib import Path

    try:
        lines = (Path(folder) / "data" / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return (int(lines[0]), lines[7].strip()) if len(lines) >= 8 and lines[0].strip().isdigit() else None


def _serves(pid: int, folder) -> bool:
    import os

    try:
        return os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(os.path.join(folder, "data"))
    except OSError:
        return False


def _drill_process(env: str, tmp: str):
    import os
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    return subprocess.Popen([sys.executable, "-m", "ubertruck_ops.deployments.cli", "run", "restore-drill", "--param",
                             f"environment={env}"], env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
                                                         "TMPDIR": tmp},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _scratch_server_up(tmp: str, drill, seconds: float = 300) -> str:
    """Wait until `drill` has a scratch PostgreSQL accepting connections in `tmp`; return its folder."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for folder in glob.glob(f"{tmp}/ubertruck-pg-*"):
            found = _postmaster(folder)
            if found and found[1] == "ready" and _serves(found[0], folder):
                return folder
        assert drill.poll() is None, f"the drill ended first: {drill.communicate()[1][-3000:]}"
        time.sleep(0.02)
    raise AssertionError("the drill's scratch server never came up")


def test_a_sigkilled_drill_takes_its_scratch_server_with_it_and_the_next_drill_sweeps_only_dead_drills_folders(
        pg18, source_db, local_repo):
    import os
    import shutil
    import signal
    import tempfile
    import time

    env = save_env(source_db, BackupRepository(url=str(local_repo)))
    nightly_backup(environment=env)
    tmp = tempfile.mkdtemp(prefix="ut-drills-")
    os.chmod(tmp, 0o711)          # the server user (we are root) passes through it, as through /tmp
    drills = []
    try:
        killed = _drill_process(env, tmp)
        drills.append(killed)
        left = _scratch_server_up(tmp, killed)
        server = _postmaster(left)[0]
        killed.kill()                                   # SIGKILL: no cleanup runs in the drill
        killed.communicate(timeout=60)
        deadline = time.monotonic() + 15
        while _serves(server, left) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _serves(server, left), "the killed drill's scratch PostgreSQL is still running on its copy"
        print(f"\nscratch server gone {15 - (deadline - time.monotonic()):.1f} s after the drill was killed")
        assert os.path.isdir(left)                      # what the next drill sweeps

        live = _drill_process(env, tmp)                 # the next drill: it sweeps first, then works
        drills.append(live)
        working = _scratch_server_up(tmp, live)
        assert not os.path.exists(left), "the next drill left the killed drill's scratch folder"
        live.send_signal(signal.SIGSTOP)                # paused mid-restore: its owner lives
        try:
            concurrent = _drill_process(env, tmp)
            drills.append(concurrent)
            out, err = concurrent.communicate(timeout=600)
            assert concurrent.returncode == 0 and '"passed": true' in out, err[-3000:]
            assert os.path.isdir(working) and _serves(_postmaster(working)[0], working), \
                "a drill swept the scratch folder of a drill that is still running"
        finally:
            live.send_signal(signal.SIGCONT)
        out, err = live.communicate(timeout=600)
        assert live.returncode == 0 and '"passed": true' in out, err[-3000:]
        assert f"removed {left}, an earlier drill's scratch folder whose owner (pid {killed.pid}) is gone" in err
        assert not glob.glob(f"{tmp}/ubertruck-pg-*")
    finally:
        for drill in drills:
            if drill.poll() is None:
                drill.send_signal(signal.SIGCONT)
                drill.kill()
                drill.wait(timeout=30)
        for folder in glob.glob(f"{tmp}/ubertruck-pg-*"):   # servers a failed run left: started by this test
            found = _postmaster(folder)
            if found and _serves(found[0], folder):
                os.kill(found[0], signal.SIGQUIT)
        time.sleep(1)
        shutil.rmtree(tmp, ignore_errors=True)


def test_the_sweep_stops_a_server_still_running_on_a_dead_drills_folder_and_keeps_a_live_owners(pg18):
    """A leftover whose server still runs (started detached, as drills before this release did) is
    stopped - it is a postgres working in that folder's data directory - and removed; a folder whose
    owner lives is not touched, server and all."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from ubertruck_ops.tasks import leftovers
    from ubertruck_ops.tasks.postgres import client_bin_dir
    from ubertruck_ops.tasks.scratch_postgres import LocalServer

    tmp = Path(tempfile.mkdtemp(prefix="ut-sweep-"))
    os.chmod(tmp, 0o711)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    servers = {}
    try:
        for owner in ("dead", "alive"):
            folder = Path(tempfile.mkdtemp(prefix="ubertruck-pg-", dir=tmp))
            if owner == "alive":
                leftovers.record_owner(folder)
            else:
                (folder / "owner.json").write_text(json.dumps({"pid": int(dead.stdout), "start": 1,
                                                               "boot": leftovers.boot_id()}))
            servers[owner] = LocalServer(client_bin_dir(), folder).start()    # pg_ctl: parent 1 once we are gone
        running = {owner: _postmaster(server.base)[0] for owner, server in servers.items()}

        removed = leftovers.sweep_leftovers(tmp)

        assert removed == [str(servers["dead"].base)]
        assert not _serves(running["dead"], servers["dead"].base) and not servers["dead"].base.exists()
        assert _serves(running["alive"], servers["alive"].base)
        assert leftovers.sweep_leftovers(tmp) == []
    finally:
        for server in servers.values():
            if server.base.exists():
                server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
