"""A backup host whose clock runs ahead (issue 22, item 6): retention fails closed on time.

The real command as cron runs it (`ubertruck-ops run nightly-backup`, its own PREFECT_HOME) under
libfaketime (Debian's `faketime`), which moves every clock read in that process tree - ours,
Prefect's, gpg's - while the PostgreSQL server, started by the tests, keeps the right time. The
project reads "now" through one function (core.manifest.utc_now); nothing in it knows about tests.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ubertruck_ops.core.manifest import MANIFEST_NAME, Manifest, backup_folder, new_backup_id
from ubertruck_ops.tasks import load
from ubertruck_ops.tasks.repository import LocalRepository

from tests.helpers import require

PROJECT = Path(__file__).resolve().parents[1]
UBERTRUCK_OPS = PROJECT / ".venv" / "bin" / "ubertruck-ops"
DAY = 86400


@pytest.fixture
def cron(tmp_path, source_db, local_repo, slack):
    """A backup host as cron sees it: its own PREFECT_HOME, blocks saved by `blocks init --env-file`."""
    require(shutil.which("faketime") is not None, "faketime is missing: apt-get install -y faketime")
    base = Path(tempfile.mkdtemp(prefix="ut-clock-"))       # short: gpg-agent's socket path must fit
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    env.update(PREFECT_HOME=str(base / "home"), TMPDIR=str(base / "tmp"), UBERTRUCK_STATE_DIR=str(base / "state"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    (base / "tmp").mkdir()
    db = source_db
    env_file = tmp_path / "cron.env"
    env_file.write_text(f"DATABASE_URL=postgresql://{db.user}:{db.password.get_secret_value()}@127.0.0.1:{db.port}/"
                        f"{db.database}\nBACKUP_ENCRYPTION_KEY=clock-passphrase\nBACKUP_REPOSITORY={local_repo}\n"
                        f"APP_ROOT={tmp_path / 'no-app'}\nSLACK_WEBHOOK_URL={slack.webhook()}\n")
    init = subprocess.run([UBERTRUCK_OPS, "blocks", "init", "--env-file", env_file, "--name", "prod"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert init.returncode == 0, init.stderr[-3000:]
    yield env
    shutil.rmtree(base, ignore_errors=True)


def nightly(env: dict, clock: str | None = None) -> subprocess.CompletedProcess:
    """`ubertruck-ops run nightly-backup`, under `faketime -f CLOCK` when given (e.g. '+45d')."""
    argv = [str(UBERTRUCK_OPS), "run", "nightly-backup", "--param", "environment=prod"]
    if clock:
        argv = ["faketime", "-f", clock, *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def plant_copy(repo: Path, template: Path, age_days: float) -> str:
    """Copy a real backup into the repository as one that finished `age_days` ago; return its id."""
    finished = datetime.now(UTC) - timedelta(days=age_days)
    backup_id = new_backup_id(finished, "logical", secrets.token_hex(3))
    folder = repo / backup_folder(backup_id)
    folder.mkdir(parents=True)
    for path in template.parent.iterdir():
        if path.name != MANIFEST_NAME:
            shutil.copyfile(path, folder / path.name)
    raw = json.loads(template.read_text())
    moment = finished.isoformat(timespec="seconds")
    (folder / MANIFEST_NAME).write_text(json.dumps({**raw, "backup_id": backup_id, "started_at": moment,
                                                    "finished_at": moment}))
    stamp = time.time() - age_days * DAY
    for path in folder.iterdir():
        os.utime(path, (stamp, stamp))
    return backup_id


def manifests(repo: Path) -> dict[str, Manifest]:
    return {m.backup_id: m for m in (Manifest.from_json(p.read_bytes()) for p in repo.rglob(MANIFEST_NAME))}


def test_a_nightly_backup_with_the_host_clock_45_days_ahead_deletes_no_young_backup_and_says_so_loudly(
        cron, local_repo, slack):
    first = nightly(cron)
    assert first.returncode == 0, first.stderr[-4000:]
    [template] = list(local_repo.rglob(MANIFEST_NAME))
    young = {plant_copy(local_repo, template, age) for age in (29, 20, 10, 1)} | {template.parent.name}
    expired = plant_copy(local_repo, template, 40)          # really expired: held too (ages are unknown)

    ahead = nightly(cron, "+45d")

    assert ahead.returncode == 0, ahead.stderr[-4000:]
    kept = manifests(local_repo)
    assert young | {expired} <= set(kept), f"deleted: {sorted(young - set(kept))}"
    repo = LocalRepository(str(local_repo))
    for backup_id in young:
        load.verify_objects.fn(repo, kept[backup_id])
    [new_id] = set(kept) - young - {expired}
    # Dated by the database server's clock, which is right: not 45 days in its future.
    real_now = datetime.now(UTC)
    assert kept[new_id].finished <= real_now and real_now - kept[new_id].finished < timedelta(minutes=10)
    assert new_id.startswith(f"{kept[new_id].started:%Y%m%dT%H%M}") and local_repo.joinpath(backup_folder(new_id)).is_dir()
    # Loudly: the run's log, its result, and Slack.
    assert "45.0 days ahead of the database server's" in ahead.stderr and "retention held" in ahead.stderr
    result = json.loads(ahead.stdout)
    assert result["retention"]["expired"] == [] and result["retention"]["held"].startswith("retention held: ")
    # Judged by the server's clock only the really expired one is old enough; it waits for agreeing clocks too.
    assert result["retention"]["would_expire"] == [expired]
    [done] = [p for p in slack.posts if new_id in str(p)]
    assert "retention held: this host's clock is 45.0 days ahead of the database server's" in str(done)
    assert "nothing was deleted by age" in str(done)


def test_a_clock_two_hours_behind_loses_no_backup_dates_by_the_server_and_says_the_host_is_behind(
        cron, local_repo, slack):
    first = nightly(cron)
    assert first.returncode == 0, first.stderr[-4000:]

    behind = nightly(cron, "-2h")

    assert behind.returncode == 0, behind.stderr[-4000:]
    second = json.loads(behind.stdout)
    kept = manifests(local_repo)
    assert set(kept) == {json.loads(first.stdout)["backup_id"], second["backup_id"]}
    for manifest in kept.values():
        load.verify_objects.fn(LocalRepository(str(local_repo)), manifest)
    assert second["retention"]["expired"] == [] and second["retention"]["incomplete_removed"] == []
    # Dated by the server's clock: after the first backup, not two hours before it.
    assert kept[second["backup_id"]].finished >= kept[json.loads(first.stdout)["backup_id"]].finished
    assert "this host's clock is 2h 00m behind the database server's" in second["retention"]["held"]
    assert "check NTP on this host" in behind.stderr
    [done] = [p for p in slack.posts if "completed" in p["text"] and second["backup_id"] in str(p)]
    assert "2h 00m behind the database server's" in str(done)
