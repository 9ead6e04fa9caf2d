"""What `blocks init` refuses to save (issue 22, items 8 and 13): a DATABASE_URL whose password holds an
unencoded @ (libpq would keep only its start as the password and save the rest as the non-secret host,
shown everywhere), and APP_SERVICES names that would become paths. The real command, as an operator runs
it; the refusal names the variable and repeats nothing of the value."""

from __future__ import annotations

import pytest

from ubertruck_ops.blocks.database import PostgresDatabase

from tests.helpers import new_env_name
from tests.test_cli import cli

PASSWORD = "P@ssw0rd-Kx7q-secret-tail"
FRAGMENTS = ("ssw0rd", "Kx7q", "secret-tail", "w0rd-Kx7q")


def _env_file(tmp_path, **variables: str):
    lines = {"BACKUP_ENCRYPTION_KEY": "inputs-passphrase", "BACKUP_REPOSITORY": str(tmp_path / "repo"),
             "APP_ROOT": str(tmp_path / "no-app"), **variables}
    path = tmp_path / "inputs.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    return path


@pytest.mark.parametrize("variable, url", [
    ("DATABASE_URL", f"postgresql://backup:{PASSWORD}@db.internal:5432/ubertruck_prod"),
    ("DRILL_DATABASE_URL", f"postgresql://drill:{PASSWORD}@drill.internal:5432/postgres"),
])
def test_blocks_init_refuses_a_password_with_an_unencoded_at_naming_the_variable_and_repeating_none_of_it(
        tmp_path, variable, url):
    name = new_env_name()
    variables = {"DATABASE_URL": "postgresql://backup:fine@db.internal:5432/ubertruck_prod", variable: url}

    init = cli("blocks", "init", "--env-file", str(_env_file(tmp_path, **variables)), "--name", name)

    assert init.returncode != 0
    said = init.stdout + init.stderr
    assert f"{variable} has a host that is not a host name, an IP address or a socket folder" in said, said[-2000:]
    assert "percent-encode @ as %40" in said
    for fragment in FRAGMENTS:
        assert fragment not in said, f"{fragment!r} of the password reached the output"
    with pytest.raises(ValueError):
        PostgresDatabase.load(f"{name}-database")      # nothing was saved


def test_the_same_password_percent_encoded_is_saved_whole_as_the_secret(tmp_path):
    name = new_env_name()
    url = f"postgresql://backup:{PASSWORD.replace('@', '%40')}@db.internal:5432/ubertruck_prod"

    init = cli("blocks", "init", "--env-file", str(_env_file(tmp_path, DATABASE_URL=url)), "--name", name)

    assert init.returncode == 0, init.stderr[-3000:]
    saved = PostgresDatabase.load(f"{name}-database")
    assert saved.host == "db.internal" and saved.password.get_secret_value() == PASSWORD
    assert not any(fragment in init.stdout + init.stderr for fragment in FRAGMENTS)


@pytest.mark.parametrize("services", ["../../etc:3001", "user-service:3001,-rf:3002"])
def test_blocks_init_refuses_app_services_that_are_not_plain_names_and_ports_naming_the_variable(tmp_path, services):
    name = new_env_name()
    env_file = _env_file(tmp_path, DATABASE_URL="postgresql://backup:fine@db.internal:5432/ubertruck_prod",
                         APP_SERVICES=services)

    init = cli("blocks", "init", "--env-file", str(env_file), "--name", name)

    assert init.returncode != 0
    assert "APP_SERVICES item" in init.stderr, init.stderr[-2000:]
    assert "lowercase letters, digits and dashes" in init.stderr or "from 1 to 65535" in init.stderr
    with pytest.raises(ValueError):
        PostgresDatabase.load(f"{name}-database")


def test_a_database_url_whose_hostaddr_is_off_this_machine_gets_the_require_default_even_for_host_localhost():
    db = PostgresDatabase.from_url("postgresql://backup:pw@localhost:5432/ubertruck_prod?hostaddr=10.0.0.5")
    assert db.sslmode == "require" and db.libpq_env()["PGSSLMODE"] == "require"
    assert db.connect_kwargs()["sslmode"] == "require"
    tunnel = PostgresDatabase.from_url("postgresql://backup:pw@db.example.com/ubertruck_prod?hostaddr=127.0.0.1")
    assert tunnel.sslmode is None


@pytest.mark.parametrize("method", ["logical", "physical"])
def test_a_restore_to_a_target_time_without_an_offset_is_refused_before_anything_is_touched(pg18, tmp_path, method):
    """Issue 22, item 13: `17:00` was read as UTC, 5.5 hours off the guide's India time."""
    from ubertruck_ops.blocks.repository import BackupRepository
    from ubertruck_ops.flows.nightly_backup import nightly_backup
    from ubertruck_ops.flows.restore import restore

    from tests.helpers import make_database, save_env
    from tests.parts import table_checksums

    db = make_database(pg18, size_mb=1)
    env = save_env(db, BackupRepository(url=str(tmp_path / "repo")))
    nightly_backup(environment=env)
    before = table_checksums(db)
    confirm = {"confirm": db.database} if method == "logical" else {}

    state = restore(environment=env, target_time="2026-11-24T17:00:00", method=method, return_state=True, **confirm)

    assert state.is_failed()
    assert "target_time '2026-11-24T17:00:00' has no offset" in str(state.message)
    assert "e.g. 2026-11-24T17:00:00+05:30 for India time" in str(state.message)
    assert table_checksums(db) == before
