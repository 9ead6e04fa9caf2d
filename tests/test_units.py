"""Pure logic outside core/, without Prefect or servers: command builders, masking, blocks from
variables, CLI parameters, the check runner, the checklist summary, the tar member capture."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from ubertruck_ops.blocks.app import AppHost, default_of, parse_services
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.variables import environment_from_variables
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CRITICAL, ERROR, OK, WARN, CheckResult
from ubertruck_ops.core.reports import checklist_slack_summary as slack_summary
from ubertruck_ops.deployments.cli import parse_params
from ubertruck_ops.tasks import postgres
from ubertruck_ops.tasks.checks import run_checks
from ubertruck_ops.tasks.crypto import GpgSession, explain_decrypt_failure
from ubertruck_ops.tasks.execute import display, mask
from ubertruck_ops.tasks.physical import TarMemberCapture


def test_pg_dump_and_gpg_commands_carry_no_secret_in_argv():
    db = PostgresDatabase(host="db.internal", database="ubertruck_prod", user="admin", password=SecretStr("pw-SECRET"))
    dump = postgres.pg_dump_stage(db, "00000003-0000001B-1")
    assert "--snapshot=00000003-0000001B-1" in dump.argv and "--format=custom" in dump.argv
    assert "pw-SECRET" not in " ".join(map(str, dump.argv)) and dump.env["PGPASSWORD"] == "pw-SECRET"
    session = GpgSession(BackupEncryption(passphrase=SecretStr("phrase-SECRET")), "/tmp/none")
    stage = session.encrypt_stage()
    assert "phrase-SECRET" not in " ".join(stage.argv)
    assert ["--cipher-algo", "AES256"] == stage.argv[stage.argv.index("--cipher-algo"):][:2]
    assert ["--compress-algo", "none"] == stage.argv[stage.argv.index("--compress-algo"):][:2]
    assert len(stage.pass_fds) == 1


def test_restore_into_old_servers_drops_only_the_transaction_timeout_line():
    db = PostgresDatabase(database="x", user="u")
    assert [s.name for s in postgres.pg_restore_stages(db, "x", 180001)] == ["pg_restore"]
    assert [s.name for s in postgres.pg_restore_stages(db, "x", 150018)] == ["pg_restore", "sed", "psql"]


def test_logged_commands_mask_secrets():
    assert display(["tool", "--x=hunter2"], ["hunter2"]) == "tool --x=********"
    assert mask("a hunter2 b", ["hunter2", ""]) == "a ******** b"


def test_decrypt_failures_are_explained_in_operator_terms():
    symmetric = BackupEncryption(passphrase=SecretStr("p"))
    assert "BACKUP_ENCRYPTION_KEY" in explain_decrypt_failure("gpg: decryption failed: Bad session key", symmetric)
    public = BackupEncryption(recipients=["ABC"], public_keys="-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "BACKUP_GPG_PRIVATE_KEY" in explain_decrypt_failure("gpg: decryption failed: No secret key", public)


def test_variables_make_blocks_and_missing_ones_are_named():
    base = {"DATABASE_URL": "postgresql://admin:p%40ss@db:5433/ubertruck_prod", "BACKUP_ENCRYPTION_KEY": "k",
            "BACKUP_REPOSITORY": "s3://ubertruck-backups/nightly", "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_SECRET_ACCESS_KEY": "s", "SLACK_WEBHOOK_URL": "https://hooks.example/x"}
    env = environment_from_variables(base)
    assert (env.database.host, env.database.port, env.database.password.get_secret_value()) == ("db", 5433, "p@ss")
    assert env.repository.prefix == "nightly" and env.repository.s3_bucket.bucket_name == "ubertruck-backups"
    assert env.repository.s3_bucket.credentials.aws_client_parameters.endpoint_url == "http://127.0.0.1:9000"
    assert env.archive.app_root == "/opt/ubertruck" and env.drill_database is None
    for missing, message in [("DATABASE_URL", "DATABASE_URL is required"),
                             ("BACKUP_ENCRYPTION_KEY", "BACKUP_ENCRYPTION_KEY"),
                             ("BACKUP_REPOSITORY", "BACKUP_REPOSITORY is required")]:
        with pytest.raises(ValueError, match=message):
            environment_from_variables({k: v for k, v in base.items() if k != missing})
    with pytest.raises(ValueError, match="absolute path"):
        environment_from_variables({**base, "BACKUP_REPOSITORY": "relative/dir"})


def test_params_are_json_when_they_parse_and_strings_otherwise():
    assert parse_params(["tag=v1.10.0", "n=3", "flag=true", "x=1.10", "confirm=ubertruck_prod"]) == {
        "tag": "v1.10.0", "n": 3, "flag": True, "x": 1.1, "confirm": "ubertruck_prod"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["oops"])


def test_no_space_left_is_recognised_through_the_errors_it_caused():
    import errno

    from ubertruck_ops.tasks.catalog import out_of_space, repository_full

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("dump failed") from inner
    except RuntimeError as outer:
        assert out_of_space(outer)
    assert not out_of_space(RuntimeError("pg_dump failed (killed by signal 9)"))
    message = str(repository_full("local folder /srv/backups", OSError(errno.ENOSPC, "No space left on device"),
                                  {"failed_backup_removed": True, "expired": ["20261001T020000Z-logical-aaaaaa"],
                                   "bytes_freed": 5 << 20}))
    assert message.startswith("the backup repository local folder /srv/backups is full (no space left on device): "
                              "the backup failed and left no manifest and no partial object; retention then freed "
                              "5.0 MiB (1 expired backup(s): 20261001T020000Z-logical-aaaaaa)")
    nothing = str(repository_full("x", OSError(errno.ENOSPC, "full"), {"failed_backup_removed": True, "expired": [],
                                                                    "bytes_freed": 0}))
    assert "retention found nothing expired to free: add space, or lower keep_full_days" in nothing


def test_a_hung_check_costs_only_its_deadline_and_a_raising_one_is_error():
    def hangs():
        time.sleep(4)
        return checks.ok("hangs")

    def raises():
        raise ConnectionError("refused")

    clock = time.monotonic()
    results = {r.name: r for r in run_checks({"hangs": hangs, "raises": raises, "fine": lambda: checks.ok("fine")},
                                             timeout=1.0)}
    assert time.monotonic() - clock < 2.0
    assert results["hangs"].status == CRITICAL and "no answer within 1 s" in results["hangs"].detail
    assert results["raises"].status == ERROR and "ConnectionError: refused" in results["raises"].detail
    assert results["fine"].status == OK


def test_slack_summary_lists_critical_items_first_and_carries_no_secret():
    results = [CheckResult("disk /", WARN, 75, "", "75% used", "low"),
               CheckResult("health payment-service", CRITICAL, "down", "2xx", "no answer on port 3005", "critical"),
               CheckResult("cpu", OK, 10, "", "10%")]
    payload = slack_summary("Morning checklist", "production", results)
    lines = payload["blocks"][0]["text"]["text"].splitlines()
    assert "1 critical" in lines[0] and "payment-service" in lines[1] and "disk /" in lines[2]
    assert all("cpu" not in line for line in lines[1:])


def test_app_host_refuses_credentials_in_the_repository_url_and_reads_app_services():
    with pytest.raises(ValueError, match="deploy key"):
        AppHost(repo_url="https://bot:ghp_secret@github.com/ubertruck/mvp.git")
    with pytest.raises(ValueError, match="deploy key"):   # a token alone, as the user name
        AppHost(repo_url="https://ghp_secret@github.com/ubertruck/mvp.git")
    assert AppHost(repo_url="git@github.com:ubertruck/mvp.git").repo_url
    assert AppHost(repo_url="ssh://git@github.com/ubertruck/mvp.git").repo_url
    assert parse_services("user-service:3001, fleet-service:3002") == {"user-service": 3001, "fleet-service": 3002}
    for bad in ["user-service", "user-service:http", "user-service:70000", ""]:
        with pytest.raises(ValueError, match="APP_SERVICES"):
            parse_services(bad)


def test_the_backup_manifest_is_picked_out_of_a_tar_stream_in_any_chunking():
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, payload in [("base/1/1259", b"x" * 70000), ("backup_manifest", b'{"WAL-Ranges": []}')]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    stream = buffer.getvalue()
    for size in (1, 511, 512, 4096, len(stream)):
        capture = TarMemberCapture("backup_manifest")
        for start in range(0, len(stream), size):
            capture(stream[start:start + size])
        assert capture.found and bytes(capture.captured) == b'{"WAL-Ranges": []}'


def test_the_block_classes_own_the_guides_defaults_and_blocks_init_derives_them():
    from ubertruck_ops.blocks.archive import ArchiveSources
    from ubertruck_ops.sandbox.app import SERVICES

    env = environment_from_variables({"DATABASE_URL": "postgresql://u:p@db/ubertruck_prod", "BACKUP_ENCRYPTION_KEY": "k",
                                      "BACKUP_REPOSITORY": "/srv/backups"})
    assert env.app.services == default_of(AppHost, "services") == SERVICES
    assert list(SERVICES) == ["user-service", "fleet-service", "booking-service", "route-service", "payment-service",
                              "admin-service"] and list(SERVICES.values()) == list(range(3001, 3007))
    assert env.app.app_root == env.archive.app_root == ArchiveSources().app_root == "/opt/ubertruck"
    assert (env.app.web_root, env.app.log_dir) == ("/var/www/html", "/var/log/ubertruck")
    default_of(AppHost, "services")["user-service"] = 1
    assert AppHost().services["user-service"] == 3001, "a default is a fresh copy"


def test_checks_run_with_the_runs_prefect_settings_not_whatever_a_bare_thread_finds():
    """A check reading the Prefect API from a bare thread lost the run's API and started Prefect's
    own temporary server (seen in the demo's morning checklist)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def seen_api() -> CheckResult:
        return checks.ok("api", detail=PREFECT_API_URL.value() or "none")

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        [result] = run_checks({"api": seen_api}, timeout=5)
    assert result.detail == "http://127.0.0.1:9/api"


def test_the_published_frontend_is_readable_by_the_web_server_and_writable_by_nobody_else(tmp_path):
    from ubertruck_ops.tasks.release import share_with_web_server

    app_root = tmp_path / "app"
    dist = app_root / "releases" / "v1.0.0" / "frontend" / "dist"
    (dist / "assets").mkdir(parents=True, mode=0o700)
    (dist / "index.html").write_text("<html></html>")
    (dist / "index.html").chmod(0o666)                  # a careless build: world-writable
    (dist / "assets" / "app.js").write_text("1")
    (dist / "assets" / "app.js").chmod(0o600)
    secret = app_root / "shared" / ".env.production"
    secret.parent.mkdir(parents=True)
    secret.write_text("DATABASE_URL=...")
    secret.chmod(0o600)
    (dist / "env").symlink_to(secret)                   # a link must not open what it points at
    (app_root / "releases" / "v1.0.0" / "user-service").mkdir(mode=0o700)

    share_with_web_server(dist, app_root)

    mode = lambda p: p.stat().st_mode & 0o7777  # noqa: E731
    assert mode(dist / "index.html") == 0o644 and mode(dist / "assets" / "app.js") == 0o644
    assert mode(dist) == mode(dist / "assets") == 0o755
    assert mode(secret) == 0o600
    assert mode(app_root / "releases" / "v1.0.0" / "user-service") == 0o700
    for folder in (app_root, app_root / "releases", app_root / "releases" / "v1.0.0", dist.parent):
        assert mode(folder) & 0o011 == 0o011 and mode(folder) & 0o022 == 0, folder
    with pytest.raises(ValueError):
        share_with_web_server(tmp_path / "elsewhere" / "dist", app_root)


def test_a_full_repository_whose_retention_was_held_says_why_nothing_was_freed():
    import errno

    from ubertruck_ops.tasks.catalog import repository_full

    message = str(repository_full("local folder /srv/b", OSError(errno.ENOSPC, "full"),
                                  {"failed_backup_removed": True, "expired": [], "bytes_freed": 0,
                                   "held": "retention held: this host's clock is 45.0 days ahead"}))
    assert "nothing expired was freed: retention held: this host's clock is 45.0 days ahead" in message
