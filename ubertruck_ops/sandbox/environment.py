"""The sandbox: an embedded stand-in for production that the demo, tests and benchmarks use.

It runs an embedded PostgreSQL 18 holding Ubertruck's schema and generated data, a
local backup repository, a small application folder with config files, and saves all
of it as the blocks of environment `sandbox`. Its secrets are generated per run and
live only in the blocks.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import psycopg
from prefect.types import SecretDict
from psycopg import sql
from pydantic import SecretStr

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.app_config import AppConfiguration
from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.environment import Environment, save_environment
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.sandbox import data
from ubertruck_ops.sandbox.app import SERVICES as APP_SERVICES
from ubertruck_ops.sandbox.app import create_app_repository, project_pm2
from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.scratch_postgres import LocalServer, free_port, port_is_free
from ubertruck_ops.tasks.server_placement import data_folder

DATABASE = "ubertruck_prod"
OWNER = "ubertruck_admin"
SERVICES = list(APP_SERVICES)


class Sandbox:
    """Embedded production stand-in under `base` (wiped and rebuilt on start)."""

    def __init__(self, base: Path | str, size_mb: int = 50, bin_dir: Path | str | None = None,
                 slack_webhook: str | None = None, with_app: bool = False):
        self.base = Path(base).resolve()
        self.size_mb = size_mb
        self.bin_dir = Path(bin_dir) if bin_dir else client_bin_dir()
        self.slack_webhook = slack_webhook
        self.server: LocalServer | None = None
        self.env: Environment | None = None
        self.row_counts: dict[str, int] = {}
        self.with_app = with_app

    @property
    def postgres_dir(self) -> Path:
        """The database server's folder: in the sandbox, or (as root, when the sandbox lies in a folder
        the server user cannot enter) under tasks/server_placement.DATA_ROOT."""
        return data_folder(self.base / "postgres")

    @property
    def repository_dir(self) -> Path:
        return self.base / "repository"

    @property
    def app_root(self) -> Path:
        return self.base / "app"

    def start(self, save_as: str | None = "sandbox") -> Environment:
        """Build everything, save the blocks as `save_as` (None: don't save), return the environment."""
        if self.base.exists():
            shutil.rmtree(self.base)
        self.base.mkdir(parents=True)
        self.base.chmod(0o711)   # the server user passes through to its own folder; nobody lists it
        if self.postgres_dir.exists():       # kept apart from the sandbox (server_placement): wiped as well
            shutil.rmtree(self.postgres_dir)
        self.server = LocalServer(self.bin_dir, self.postgres_dir, durable=True).start()
        password = secrets.token_urlsafe(18)
        with psycopg.connect(**self.server.database().connect_kwargs(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                sql.Identifier(OWNER), sql.Literal(password)))
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(OWNER)))
        database = PostgresDatabase(host="127.0.0.1", port=self.server.port, database=DATABASE, user=OWNER,
                                    password=SecretStr(password))
        with psycopg.connect(**database.connect_kwargs()) as conn:
            data.apply_schema(conn)
            self.row_counts = data.generate(conn, self.size_mb)
        self._write_app_files()
        self.repository_dir.mkdir()
        self.env = Environment(
            database=database,
            encryption=BackupEncryption(passphrase=SecretStr(secrets.token_urlsafe(32))),
            repository=BackupRepository(url=str(self.repository_dir)),
            slack=SlackNotices(webhook_url=SecretStr(self.slack_webhook) if self.slack_webhook else None),
            archive=ArchiveSources(app_root=str(self.app_root), config_files=[
                # The guide's nginx site is not in the sandbox: it shows how a missing path is reported.
                "/etc/nginx/sites-available/ubertruck",
                str(self.app_root / "shared" / ".env.production"), str(self.app_root / "ecosystem.config.js")]),
        )
        if self.with_app:
            self.env.app = self._app_host()
            # What the sample services read at start (the guide's .env.production): they refuse to start without it.
            self.env.app_config = AppConfiguration(values=SecretDict({
                "DATABASE_URL": database.url(), "JWT_SECRET": secrets.token_urlsafe(32), "JWT_EXPIRY": "1h",
                "API_VERSION": "v1"}))
        if save_as:
            save_environment(self.env, save_as)
        return self.env

    def _app_host(self) -> AppHost:
        """The sample application's repository and an application host for it, with its own
        PM2 daemon; the guide's ports 3001-3006 where free, else free ones."""
        repository = create_app_repository(self.base / "app-repository")
        wanted = dict(APP_SERVICES)
        ports = {name: port if port_is_free(port) else free_port() for name, port in wanted.items()}
        pm2 = project_pm2()
        if pm2 is None:
            raise RuntimeError("pm2 is not installed: run ./ops demo (it installs pm2 into .tools/) "
                               "or npm install -g pm2@7")
        return AppHost(app_root=str(self.base / "host"), repo_url=str(repository), services=ports,
                       web_root=str(self.base / "www" / "html"), log_dir=None, pm2_home=str(self.base / "pm2"),
                       pm2_command=pm2, nginx_reload_command=f"touch {self.base / 'www' / 'nginx-reloaded'}",
                       health_timeout_seconds=20)

    def _write_app_files(self) -> None:
        root = self.app_root
        for service in SERVICES:
            (root / "current" / service / "dist").mkdir(parents=True)
            (root / "current" / service / "dist" / "main.js").write_text(f"// {service} build\n")
            (root / "current" / service / "node_modules" / "left-pad").mkdir(parents=True)
            (root / "current" / service / "node_modules" / "left-pad" / "index.js").write_text("// excluded\n")
        (root / "shared" / "logs").mkdir(parents=True)
        (root / "shared" / ".env.production").write_text("NODE_ENV=production\nJWT_EXPIRY=1h\n")
        (root / "ecosystem.config.js").write_text("module.exports = { apps: [] };\n")

    def stop(self) -> None:
        if self.env is not None and self.env.app is not None:
            from ubertruck_ops.tasks.pm2 import kill_daemon

            kill_daemon(self.env.app)
        if self.server is not None:
            self.server.stop()

    def destroy(self) -> None:
        if self.server is not None:
            self.server.destroy()
        shutil.rmtree(self.postgres_dir, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
