"""`ubertruck-ops systemd-units`: the unit files it prints pass Debian's `systemd-analyze verify`,
name the installed command, and carry no secret."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.blocks.repository import BackupRepository

from tests.helpers import new_env_name, require, save_env


def cli(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "ubertruck_ops.deployments.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def verify(folder: Path) -> str:
    """systemd-analyze verify every unit in `folder`; return what it said about them."""
    require(shutil.which("systemd-analyze") is not None,
            "systemd-analyze is missing: apt-get install -y systemd")
    units = sorted(str(p) for p in folder.glob("*.service"))
    checked = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=120)
    said = "\n".join(line for line in (checked.stdout + checked.stderr).splitlines()
                     if any(Path(u).name in line for u in units))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return said


def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_the_units_of_one_host_and_of_several_pass_systemd_analyze_verify_and_hold_no_secret(tmp_path):
    single = save_env(PostgresDatabase(host="db.internal", database="ubertruck_prod", user="ops",
                                       password=SecretStr("db-password-SECRET")),
                      BackupRepository(url=str(tmp_path / "repo")), passphrase="passphrase-SECRET")
    fleet = new_env_name()
    AppFleet(hosts=["web-1", "web-2"]).save(f"{fleet}-fleet", overwrite=True)
    secrets = ["db-password-SECRET", "passphrase-SECRET", "auth-string-SECRET"]

    printed = cli("systemd-units", "--environment", single,
                  extra_env={"PREFECT_API_AUTH_STRING": "ubertruck:auth-string-SECRET"})
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert printed.stdout.startswith(f"# ubertruck-ops-serve-{single}.service\n")

    # verify warns about nobody and root ("not safe"), not about a user that does not exist here
    for name, user, expected in ((single, "ubertruck-ops", ["serve", "wal-archive", "watch"]),
                                 (fleet, "deploy", ["worker-backups", "worker-app-host", "worker-app-host-web-1",
                                                    "worker-app-host-web-2", "wal-archive", "watch"])):
        folder = tmp_path / name
        wrote = cli("systemd-units", "--environment", name, "--user", user, "--directory", str(folder),
                    extra_env={"PREFECT_API_AUTH_STRING": "ubertruck:auth-string-SECRET"})
        assert wrote.returncode == 0, wrote.stderr[-3000:]
        files = sorted(p.name for p in folder.glob("*.service"))
        assert files == sorted(f"ubertruck-ops-{kind}-{name}.service" for kind in expected)
        assert verify(folder) == ""            # not a warning about any of them
        for path in folder.glob("*.service"):
            text = path.read_text()
            assert text.startswith(f"# {path.name}\n")
            unit = settings(text)
            assert unit["Restart"] == "always" and unit["UMask"] == "0077" and unit["User"] == user
            assert unit["KillSignal"] == "SIGTERM" and int(unit["TimeoutStopSec"]) >= 60
            assert unit["EnvironmentFile"] == f"/etc/ubertruck-ops/{name}.env"
            program = unit["ExecStart"].split()[0]
            assert os.path.isabs(program) and os.access(program, os.X_OK), program
            assert Path(program).name == ("prefect" if "worker" in path.name else "ubertruck-ops")
            assert Path(program).parent == Path(sys.executable).parent     # this installation's
            assert not any(secret in text for secret in secrets), path.name
            assert oct(path.stat().st_mode & 0o777) == "0o644"
