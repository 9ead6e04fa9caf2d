"""Throwaway PostgreSQL servers on 127.0.0.1: the restore drill's scratch target, the
sandbox's database and the tests' servers (any version: give its bin folder).

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
system user created on first use.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg
from pydantic import SecretStr

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.execute import CommandFailed, run

SERVER_USER = "ubertruck-pg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER], timeout=60)
    return SERVER_USER


class LocalServer:
    """A PostgreSQL cluster in its own folder, listening on 127.0.0.1 with password auth."""

    def __init__(self, bin_dir: Path | str, base_dir: Path | str | None = None, *, durable: bool = False,
                 port: int | None = None, settings: dict[str, str] | None = None):
        self.bin_dir = Path(bin_dir)
        if not (self.bin_dir / "postgres").exists():
            raise FileNotFoundError(f"no PostgreSQL server binaries in {self.bin_dir}")
        self.base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="ubertruck-pg-"))
        self._own_base = base_dir is None
        self.data = self.base / "data"
        self.port = port or free_port()
        self.durable = durable
        self.settings = dict(settings or {})
        self.user = _server_user()
        self.password = secrets.token_urlsafe(18)
        self.started = False

    def database(self, name: str = "postgres") -> PostgresDatabase:
        return PostgresDatabase(host="127.0.0.1", port=self.port, database=name, user="postgres",
                                password=SecretStr(self.password))

    def start(self, set_password: bool = True) -> "LocalServer":
        """Create the cluster when new, start it and set a fresh superuser password. Raise CommandFailed
        with the server log when it does not start."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        self._check_reachable()
        fresh = not (self.data / "PG_VERSION").exists()
        if not fresh:
            self.data.chmod(0o700)   # postgres refuses a data directory others can read
        if fresh:
            self.data.mkdir(exist_ok=True)
            self._chown(self.data)
            run([self.bin_dir / "initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust",
                 "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"],
                user=self.user, timeout=180)
        sockets = self.base / "run"
        sockets.mkdir(exist_ok=True)
        self._chown(sockets)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={sockets}"
        if not self.durable:
            # Scratch servers hold copies: durability only costs time here.
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for name, value in self.settings.items():
            options += f" -c {name}={value}"
        try:
            run([self.bin_dir / "pg_ctl", "-D", self.data, "-l", self.data / "server.log", "-w", "-t", "60",
                 "-o", options, "start"], user=self.user, timeout=120)
        except CommandFailed as exc:
            log = (self.data / "server.log").read_text(errors="replace")[-2000:] if (self.data / "server.log").exists() else ""
            raise CommandFailed(exc.command, exc.returncode, exc.stderr + "\n" + log) from None
        self.started = True
        if set_password:
            self.set_password()
        return self

    def wait_until_promoted(self, timeout: float) -> None:
        """Wait until the server has finished recovery. Raise TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.local_connection() as conn:
            while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"recovery did not finish within {timeout:.0f} s")
                time.sleep(0.5)

    def set_password(self) -> None:
        with self.local_connection() as conn:
            conn.execute(psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(psycopg.sql.Literal(self.password)))

    def local_connection(self, user: str = "postgres") -> psycopg.Connection:
        """Return an autocommit connection over the Unix socket (trust auth), as the bootstrap superuser."""
        return psycopg.connect(host=str(self.base / "run"), port=self.port, user=user, dbname="postgres", autocommit=True)

    def stop(self) -> None:
        if self.started:
            run([self.bin_dir / "pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", "fast", "stop"],
                user=self.user, timeout=120)
            self.started = False

    def destroy(self) -> None:
        """Stop the server (if running) and remove its folder."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base if self._own_base else self.data, ignore_errors=True)

    def _check_reachable(self) -> None:
        """Raise PermissionError when the server's user cannot reach our folder (root-only parents)."""
        if not self.user:
            return
        for folder in [*reversed(self.base.resolve().parents)]:
            if not folder.stat().st_mode & 0o001:
                raise PermissionError(f"PostgreSQL runs as user {self.user} (we are root) and cannot enter {folder}: "
                                      f"chmod o+x {folder}, or put the server's folder elsewhere")

    def _chown(self, path: Path, recursive: bool = False) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            if recursive:
                for root, dirs, files in os.walk(path):
                    for name in dirs + files:
                        os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.destroy()


@contextmanager
def scratch_target(drill_server: PostgresDatabase | None, label: str) -> Iterator[tuple[PostgresDatabase, str]]:
    """Yield (server, database name) for a throwaway restore, and remove it afterwards, failed or not.

    With `drill_server` (DRILL_DATABASE_URL) a new database on that server; else a new
    embedded PostgreSQL 18 in a temporary folder.
    """
    log = logger()
    if drill_server is not None:
        name = f"ubertruck_drill_{label}"[:63]
        try:
            yield drill_server, name
        finally:
            from ubertruck_ops.tasks import postgres  # late: postgres imports this module's siblings

            with postgres.connect(drill_server, "postgres", autocommit=True) as admin:
                postgres.drop_database(admin, name)
            log.info("dropped scratch database %s on %s:%s", name, drill_server.host, drill_server.port)
        return
    from ubertruck_ops.tasks.postgres import client_bin_dir

    server = LocalServer(client_bin_dir())
    try:
        server.start()
        log.info("scratch PostgreSQL started on 127.0.0.1:%s in %s", server.port, server.base)
        yield server.database(), "ubertruck_drill"
    finally:
        server.destroy()
        log.info("scratch PostgreSQL stopped and removed")
