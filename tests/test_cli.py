"""The `ubertruck-ops` command and the blocks, used as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr

from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.slack import SlackNotices

from tests.helpers import new_env_name


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **(env or {})}
    return subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", *args], env=environment,
                          capture_output=True, text=True, timeout=300)


def test_every_block_saves_and_loads_with_secrets_kept_secret():
    name = new_env_name()
    blocks = [PostgresDatabase(database="d", user="u", password=SecretStr("pw")),
              BackupEncryption(passphrase=SecretStr("phrase")), BackupRepository(url="/srv/backups"),
              SlackNotices(webhook_url=SecretStr("https://hooks.example/T")), ArchiveSources(config_files=["/etc/x"])]
    for block in blocks:
        block.save(f"{name}-{type(block).__name__.lower()}")
        loaded = type(block).load(f"{name}-{type(block).__name__.lower()}")
        assert loaded.model_dump() == block.model_dump()
        assert "pw" not in repr(loaded) or not hasattr(loaded, "password")


def test_blocks_init_from_an_env_file_then_run_a_flow_from_the_command_line(pg18, tmp_path):
    from tests.helpers import make_database

    db = make_database(pg18)
    name = new_env_name()
    env_file = tmp_path / "production.env"
    env_file.write_text(f"DATABASE_URL=postgresql://{db.user}:{db.password.get_secret_value()}@127.0.0.1:{db.port}/{db.database}\n"
                        f"BACKUP_ENCRYPTION_KEY=cli-passphrase\nBACKUP_REPOSITORY={tmp_path / 'repo'}\n"
                        f"APP_ROOT={tmp_path / 'no-app'}\nSLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/cli\n")
    init = cli("blocks", "init", "--env-file", str(env_file), "--name", name)
    assert init.returncode == 0, init.stderr
    assert f"saved ubertruck-postgres-database/{name}-database" in init.stdout
    assert "global-concurrency-limit/ubertruck-backup" in init.stdout
    assert "cli-passphrase" not in init.stdout + init.stderr
    assert load_environment(name).database.database == db.database
    # Its role has no REPLICATION: no six-hourly tier applies, said once here, and serve leaves it unscheduled.
    assert "six-hourly tier: none - the backup role lacks the REPLICATION privilege" in init.stdout
    # the server-side alerts, once each: a re-run updates them; none for the unscheduled six-hourly backup
    assert f"automation/ubertruck-{name}-run-failed created" in init.stdout
    assert f"automation/ubertruck-{name}-nightly-backup-missing created" in init.stdout
    assert "incremental-backup-missing" not in init.stdout and "hooks.slack.com" not in init.stdout
    assert "alert channel slack: configured" in init.stdout
    assert "alert channel page: not configured: set PAGERDUTY_ROUTING_KEY" in init.stdout
    again = cli("blocks", "init", "--env-file", str(env_file), "--name", name)
    # unchanged, not updated: an update would restart every "missing" window
    assert f"automation/ubertruck-{name}-run-failed unchanged" in again.stdout, again.stdout
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        names = [a.name for a in client.read_automations()]
    assert names.count(f"ubertruck-{name}-run-failed") == 1 and names.count(f"ubertruck-{name}-morning-checklist-missing") == 1
    from ubertruck_ops.deployments.schedules import runner_deployments
    from ubertruck_ops.deployments.serve import unscheduled_flows

    unscheduled = unscheduled_flows(name)
    assert unscheduled == {"incremental-backup"}
    served = {d.name + "/" + d.flow_name: d for d in runner_deployments(name, unscheduled)}
    assert not served[f"{name}/incremental-backup"].schedules and served[f"{name}/nightly-backup"].schedules
    rendered = cli("deployments-yaml", "--environment", name)
    schedules = {d["entrypoint"].rpartition(":")[2]: d["schedules"] for d in yaml.safe_load(rendered.stdout)["deployments"]}
    assert schedules["incremental_backup"] == [] and schedules["nightly_backup"]
    assert "incremental-backup of" in rendered.stderr and "not scheduled" in rendered.stderr

    ran = cli("run", "nightly-backup", "--param", f"environment={name}")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert '"backup_id"' in ran.stdout
    assert len(list((tmp_path / "repo").rglob("manifest.json"))) == 1

    failed = cli("run", "restore", "--param", f"environment={name}")   # refuses: no confirm
    assert failed.returncode == 1 and "confirm" in failed.stderr


def test_cli_refuses_bad_input_with_a_clear_message(tmp_path):
    unknown = cli("run", "no-such-flow")
    assert unknown.returncode == 2 and "unknown flow 'no-such-flow'; known flows:" in unknown.stderr
    bad_param = cli("run", "restore", "--param", "colour=blue")
    assert bad_param.returncode == 2 and "has no parameter(s) colour" in bad_param.stderr
    missing = cli("blocks", "init", "--name", new_env_name(), env={"DATABASE_URL": ""})
    assert missing.returncode == 2 and "DATABASE_URL is required" in missing.stderr


def test_a_silence_is_made_listed_announced_and_ended_from_the_command_line_and_bad_ones_are_refused(tmp_path):
    """silence, silences and unsilence as an operator uses them; the list is the Prefect variable the
    UI shows, and an entry written there by hand counts as well."""
    from datetime import UTC, datetime, timedelta

    from prefect.variables import Variable

    from tests.helpers import save_env
    from tests.parts import SlackReceiver

    slack = SlackReceiver().start()
    try:
        name = save_env(PostgresDatabase(database="d", user="u", password=SecretStr("p")),
                        BackupRepository(url=str(tmp_path / "repo")), slack_url=slack.webhook())
        refused = cli("silence", "--environment", name, "--for", "forever", "--reason", "x")
        assert refused.returncode == 2 and "must look like 2h" in refused.stderr, refused.stderr
        from ubertruck_ops.operations import silences

        for duration, reason, environment, why in [("9d", "x", name, "at most 7 days"),
                                                   ("1h", " ", name, "needs a --reason"),
                                                   ("1h", "x", "no-such-env", "blocks init --name no-such-env")]:
            with pytest.raises(ValueError, match=why):
                silences.make(environment, duration, reason)
        made = cli("silence", "--environment", name, "--for", "2h", "--reason", "database upgrade till 03:00",
                   "--target", "booking-service")
        assert made.returncode == 0 and "silenced booking-service of" in made.stdout, made.stderr
        silence_id = made.stdout.split("(id ")[1].split(";")[0]
        announced = [raw.decode() for raw in slack.raw if b"alerts silenced for booking-service" in raw]
        assert len(announced) == 1 and "database upgrade till 03:00" in announced[0], slack.texts()
        # The UI's view of it, and a silence an operator wrote there by hand
        stored = Variable.get(f"ubertruck_{name}_silences".replace("-", "_"))
        now = datetime.now(UTC)
        stored["silences"].append({"id": "fromui", "environment": name, "starts": now.isoformat(),
                                   "ends": (now + timedelta(minutes=30)).isoformat(), "reason": "set in the UI"})
        stored["silences"].append({"id": "naive", "environment": name, "starts": "2026-12-05T01:00:00",
                                   "ends": "2099-12-05T03:00:00", "reason": "no offset: ignored, never a crash"})
        Variable.set(f"ubertruck_{name}_silences".replace("-", "_"), stored, overwrite=True)
        listed = cli("silences", "--environment", name)
        assert f"{silence_id}  active until" in listed.stdout and "booking-service" in listed.stdout
        assert "fromui  active until" in listed.stdout and "every alert  reason: set in the UI" in listed.stdout
        assert "naive" not in listed.stdout and listed.returncode == 0
        with pytest.raises(ValueError, match="no active silence 'nope'"):
            silences.end(name, "nope")
        ended = cli("unsilence", silence_id, "--environment", name)
        assert ended.returncode == 0 and "ended" in ended.stdout, ended.stderr
        assert any("silence of booking-service ended early" in t for t in slack.texts()), slack.texts()
        assert f"{silence_id}  ended" in cli("silences", "--environment", name).stdout

        # A silence of the whole environment pauses the server's automations too, and its end resumes them.
        from prefect.client.orchestration import get_client

        from ubertruck_ops.deployments.automations import ensure_automations

        ensure_automations(name, slack.webhook(), rules=[])

        def enabled() -> dict[str, bool]:
            with get_client(sync_client=True) as client:
                return {a.name: a.enabled for a in client.read_automations() if a.name.startswith(f"ubertruck-{name}-")}
        assert set(enabled().values()) == {True} and len(enabled()) == 2, enabled()
        whole = silences.make(name, "30m", "failover test")
        assert set(enabled().values()) == {False}, enabled()
        silences.end(name, whole.id)
        assert set(enabled().values()) == {False}, enabled()       # the UI's silence of everything still holds
        silences.end(name, "fromui")
        assert set(enabled().values()) == {True}, enabled()
        with get_client(sync_client=True) as client:
            for automation in client.read_automations():
                if automation.name.startswith(f"ubertruck-{name}-"):
                    client.delete_automation(automation.id)
    finally:
        slack.stop()


def test_blocks_init_sets_the_checks_from_the_env_file_and_a_later_one_updates_only_what_it_names(tmp_path):
    """WATCH_ACCESS_LOG, TLS_HOSTS, QUEUE_KEYS and every threshold by its name; a field tuned in the UI
    survives a later blocks init that does not name it, and one it names wins."""
    from ubertruck_ops.blocks.monitoring import CheckThresholds
    from ubertruck_ops.deployments.setup import blocks_init

    name = new_env_name()
    base = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:1/d", "BACKUP_ENCRYPTION_KEY": "k",
            "BACKUP_REPOSITORY": str(tmp_path / "repo")}

    def init(**values: str) -> CheckThresholds:
        env_file = tmp_path / "production.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in {**base, **values}.items()))
        blocks_init(name, str(env_file), variables={})
        return CheckThresholds.load(f"{name}-thresholds")

    first = init(WATCH_ACCESS_LOG="/var/log/nginx/ubertruck-access.log", TLS_HOSTS="ubertruck.in, api.ubertruck.in:8443",
                 QUEUE_KEYS="bull:jobs:wait", CPU_HIGH_PCT="85", DISK_PATHS="/,/data")
    assert first.access_log == "/var/log/nginx/ubertruck-access.log" and first.cpu_high_pct == 85
    assert first.tls_hosts == ["ubertruck.in", "api.ubertruck.in:8443"] and first.queue_keys == ["bull:jobs:wait"]
    assert first.disk_paths == ["/", "/data"]
    tuned = first.model_copy(update={"memory_high_pct": 95, "cpu_high_pct": 70})       # an operator, in the UI
    tuned.save(f"{name}-thresholds", overwrite=True)
    later = init(DISK_PATHS="/")
    assert (later.memory_high_pct, later.cpu_high_pct, later.disk_paths) == (95, 70, ["/"])
    assert later.tls_hosts == ["ubertruck.in", "api.ubertruck.in:8443"] and later.access_log
    assert init(CPU_HIGH_PCT="92").cpu_high_pct == 92
    with pytest.raises(ValueError, match="environment variable CPU_HIGH_PCT is refused"):
        init(CPU_HIGH_PCT="lots")


@pytest.fixture
def open_dir():
    """A folder the unprivileged PostgreSQL user can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="ubertruck-demo-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_brings_up_the_sandbox_backs_up_drills_and_deploys(open_dir):
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    environment["PREFECT_HOME"] = str(open_dir / "prefect")
    demo = subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", "demo", "--size-mb", "15",
                           "--dir", str(open_dir / "sandbox")], env=environment, capture_output=True, text=True,
                          timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "drill passed: 6 tables" in demo.stdout and "Where to look" in demo.stdout
    assert "v1.2.0 live in" in demo.stdout and "rolled back by itself" in demo.stdout
    assert "rollback to v1.1.0 in" in demo.stdout
    assert "[5/5] morning-checklist" in demo.stdout and " ok (the full table" in demo.stdout
    # the nightly backup and the one deploy took before applying the migrations of v1.1.0
    assert len(list((open_dir / "sandbox" / "repository").rglob("manifest.json"))) == 2


def test_wal_push_archives_once_accepts_a_retry_and_refuses_different_content(tmp_path):
    from ubertruck_ops.blocks.repository import BackupRepository

    from tests.helpers import save_env

    name = save_env(PostgresDatabase(database="d", user="u"), BackupRepository(url=str(tmp_path / "repo")))
    segment = tmp_path / "000000010000000000000042"
    segment.write_bytes(os.urandom(1 << 20))

    first = cli("wal-push", str(segment), "--environment", name)
    again = cli("wal-push", str(segment), "--environment", name)
    segment.write_bytes(os.urandom(1 << 20))
    different = cli("wal-push", str(segment), "--environment", name)

    assert first.returncode == 0 and "archived" in first.stdout, first.stderr[-2000:]
    assert again.returncode == 0 and "already archived" in again.stdout
    assert different.returncode == 1 and "refusing to overwrite" in different.stderr
    stored = (tmp_path / "repo" / "wal" / f"{segment.name}.zst.gpg").read_bytes()
    assert stored[0] in (0x8C, 0xC3) and len(list((tmp_path / "repo" / "wal").iterdir())) == 2
