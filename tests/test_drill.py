"""restore-drill: proves the latest backup restores, measures RTO/RPO, always cleans up."""

from __future__ import annotations

import glob
import json

import psutil

from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.core.manifest import MANIFEST_NAME
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore_drill import restore_drill

from tests.conftest import save_env
from tests.parts import PingReceiver, flow_run_artifacts, list_databases


def scratch_servers() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and any("ubertruck-pg-" in a for a in (p.info["cmdline"] or []))}


def test_drill_restores_latest_backup_into_a_throwaway_server_and_reports(pg18, source_db, local_repo, slack):
    pings = PingReceiver().start()
    env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook(),
                   ping_url=f"{pings.url}/ping/drill-check")
    nightly_backup(environment=env)
    latest = nightly_backup(environment=env)
    del pings.pings[:]                        # the backups' own pings (tested in test_alerts)
    servers_before, folders_before = scratch_servers(), set(glob.glob("/tmp/ubertruck-pg-*"))

    state = restore_drill(environment=env, return_state=True)

    assert state.is_completed()
    result = state.result()
    assert result["mode"] == "logical" and result["passed"] and result["physical"] is None
    report = result["logical"]
    assert report["backup_id"] == latest["backup_id"] and report["passed"] and report["chain"] == [latest["backup_id"]]
    assert report["rto_seconds"] > 0 and report["rpo_seconds"] >= 0 and report["tables"] == 6
    assert scratch_servers() == servers_before and set(glob.glob("/tmp/ubertruck-pg-*")) == folders_before
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
