"""Throwaway PostgreSQL servers on 127.0.0.1: the restore drill's scratch target, the
sandbox's database and the tests' servers (any version: give its bin folder).

PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
system user with a group of its own, created on first use. No server here trusts anyone:
see LocalServer.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pydantic import SecretStr

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.names import setting_option, shell_safe_path, truncate_bytes
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.execute import CommandFailed, display, run, spawn
from ubertruck_ops.tasks.leftovers import claim_folder
from ubertruck_ops.tasks.server_placement import DATA_ROOT, server_binaries

SERVER_USER = "ubertruck-pg"
IDENT_MAP = "ubertruck"
START_SECONDS = 60


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


def _server_identity() -> tuple[str | None, str | None]:
    """Return (user, group) the server runs as: under root the system user SERVER_USER with a
    group of its own (created on first use), else (None, None): the server runs as us."""
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        try:
            run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 SERVER_USER], timeout=60)
        except CommandFailed:
            pass   # another process created it meanwhile; checked below
        entry = pwd.getpwnam(SERVER_USER)
    try:
        own = grp.getgrgid(entry.pw_gid).gr_name == SERVER_USER
    except KeyError:
        own = False
    if not own:   # created by an older release with a shared primary group (root, nogroup)
        try:
            grp.getgrnam(SERVER_USER)
        except KeyError:
            run(["groupadd", "--system", SERVER_USER], timeout=60)
        run(["usermod", "--gid", SERVER_USER, SERVER_USER], timeout=60)
    return SERVER_USER, SERVER_USER


def check_reachable(base: Path) -> None:
    """Raise PermissionError when the server's user (under root) could not enter `base`: a parent
    without o+x. The folder itself is the server user's own (0700); its parents need only o+x."""
    if os.geteuid() != 0:
        return
    for folder in [*reversed(Path(base).absolute().parents)]:
        if folder.exists() and not folder.stat().st_mode & 0o001:
            # Not "chmod o+x": opening an operator's private folder (/root, a home) weakens the host.
            raise PermissionError(f"PostgreSQL runs as user {SERVER_USER} (we are root) and cannot enter {folder}: "
                                  f"put the server's folder in a place it can reach, such as under {DATA_ROOT}")


def make_traversable_parents(base: Path) -> None:
    """Create the missing parents of `base` as 0711: the server user (under root) must pass through
    them, and under the project's umask 077 a plain mkdir would lock it out. Nobody can list them."""
    missing = []
    parent = Path(base).absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o711)


def _os_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


class LocalServer:
    """A PostgreSQL cluster in its own folder, listening on 127.0.0.1, that authenticates every
    connection: scram-sha-256 over TCP (the in-memory password of the bootstrap superuser for the
    clusters it creates; a restored cluster's own passwords), and over its Unix socket - in a 0700
    folder owned by the server user - peer authentication mapping only the OS user running the
    project to the bootstrap superuser. The hba and ident files live outside the data directory, so
    a restored data directory keeps its own pg_hba.conf untouched.

    `restored=True` starts an existing cluster that is not ours (a rebuilt backup): no initdb, no
    password change; its bootstrap superuser is found among "postgres" and `known_roles`.
    `tls_only=True` accepts TCP connections over TLS only (hostssl; give ssl=on and the
    certificate in `settings`); the rules are otherwise the same.
    `scratch=True` is a throwaway server (a drill's): it runs as our child and dies with this process,
    even by SIGKILL (fast shutdown on PR_SET_PDEATHSIG; `pg_ctl start` would leave it running for
    good, parent 1, on a copy of production), and its folder, made here unless given, records this
    process as its owner, so a later drill sweeps it once we are gone (tasks/leftovers.py).
    """

    def __init__(self, bin_dir: Path | str, base_dir: Path | str | None = None, *, durable: bool = False,
                 port: int | None = None, settings: dict[str, str] | None = None, restored: bool = False,
                 known_roles: tuple[str, ...] = (), tls_only: bool = False, scratch: bool = False):
        self.bin_dir = Path(bin_dir)
        if not (self.bin_dir / "postgres").exists():
            raise FileNotFoundError(f"no PostgreSQL server binaries in {self.bin_dir}")
        self.bin_dir = server_binaries(self.bin_dir)    # under root: where the server user can read them
        if base_dir is not None:
            shell_safe_path(base_dir, "server folder")   # before anything is created
        self.scratch = scratch
        self._process = None      # a scratch server: our child
        if base_dir:
            self.base = Path(base_dir)
        else:
            self.base = claim_folder("ubertruck-pg-") if scratch else Path(tempfile.mkdtemp(prefix="ubertruck-pg-"))
        self.base = Path(shell_safe_path(self.base, "server folder"))
        self._own_base = base_dir is None
        self.data = self.base / "data"
        self.sockets = self.base / "run"
        self.auth = self.base / "auth"
        self.log_file = self.base / "server.log"
        self.port = port or free_port()
        self.durable = durable
        self.restored = restored
        self.settings = dict(settings or {})
        self.tls_only = tls_only
        self._options = self._server_options()   # validated now: they reach pg_ctl's shell
        self.user, self.group = _server_identity()
        self.superuser: str | None = None if restored else "postgres"
        self._candidates = tuple(dict.fromkeys(("postgres", *[r for r in known_roles if r])))
        # Kept in memory only; a restored cluster keeps its own passwords.
        self.password: str | None = None if restored else secrets.token_urlsafe(18)
        self.started = False

    def database(self, name: str = "postgres") -> PostgresDatabase:
        """Return a block for database `name` as the bootstrap superuser: over TCP with our password,
        or for a restored cluster over the socket (peer)."""
        if self.password is None:
            return PostgresDatabase(host=str(self.sockets), port=self.port, database=name,
                                    user=self.superuser or "postgres")
        return PostgresDatabase(host="127.0.0.1", port=self.port, database=name, user="postgres",
                                password=SecretStr(self.password))

    def start(self, set_password: bool = True) -> LocalServer:
        """Create the cluster when new, start it and (ours only) set the superuser password. Raise
        CommandFailed with the server log when it does not start."""
        make_traversable_parents(self.base)
        self.base.mkdir(exist_ok=True)
        self.base.chmod(0o700)   # a copy of production inside: nobody else reads it
        self.give_to_server_user(self.base)
        self._check_reachable()
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh and self.restored:
            raise FileNotFoundError(f"no cluster to start in {self.data}")
        if not fresh:
            self.data.chmod(0o700)   # postgres refuses a data directory others can read
        if fresh:
            self._initdb()   # the superuser gets its password here
            set_password = False
        self.sockets.mkdir(exist_ok=True)
        self.sockets.chmod(0o700)
        self.give_to_server_user(self.sockets)
        self._write_auth(self.superuser and (self.superuser,) or self._candidates)
        if self.scratch:
            self._start_child()
        else:
            try:
                self._pg_ctl("-l", self.log_file, "-w", "-t", str(START_SECONDS), "-o", self._options, "start",
                             timeout=120)
            except CommandFailed as exc:
                raise CommandFailed(exc.command, exc.returncode, exc.stderr + "\n" + self._log_tail()) from None
        self.started = True
        try:
            if self.superuser is None:
                self._find_superuser()
            if set_password and self.password is not None:
                self.set_password()
        except BaseException:
            self.stop()   # a server we cannot reach must not stay behind
            raise
        return self

    def _log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""

    def _start_child(self) -> None:
        """Start the postmaster as our child (no shell: each setting its own argument) and wait until
        it accepts connections, as `pg_ctl -w` does: its postmaster.pid names it and says ready."""
        argv = [self.bin_dir / "postgres", "-D", self.data]
        for name, value in self._server_settings().items():
            argv += ["-c", f"{name}={value}"]
        self._process = spawn("scratch PostgreSQL", argv, die_with_parent=True, death_signal=signal.SIGINT,
                              user=self.user, group=self.group, output=self.log_file)
        deadline = time.monotonic() + START_SECONDS
        while self._postmaster_status() not in ("ready", "standby"):
            if self._process.poll() is not None:
                status = self._process.returncode
                self._process = None
                raise CommandFailed(display(argv), status, self._log_tail())
            if time.monotonic() > deadline:
                self._stop_child()
                raise CommandFailed(display(argv), None, self._log_tail(),
                                    reason=f"not accepting connections within {START_SECONDS} s")
            time.sleep(0.1)

    def _postmaster_status(self) -> str:
        """The status line of postmaster.pid when it names our child (starting, ready, standby, ...)."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return ""
        if len(lines) < 8 or lines[0].strip() != str(self._process.pid):
            return ""
        return lines[7].strip()

    def _stop_child(self) -> None:
        """Fast shutdown of our child server (SIGINT: sessions are ended), SIGKILL if it hangs."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except Exception:  # noqa: BLE001 - a server that will not stop is killed
            logger().warning("scratch PostgreSQL (pid %s) did not stop within 60 s; killing it", process.pid)
            process.kill()
            process.wait(timeout=10)

    def _initdb(self) -> None:
        self.data.mkdir(exist_ok=True)
        self.data.chmod(0o700)
        self.give_to_server_user(self.data)
        pwfile = self.base / "initdb-password"
        try:
            with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                handle.write(self.password + "\n")
            self.give_to_server_user(pwfile)
            run([self.bin_dir / "initdb", "-D", self.data, "-U", "postgres", f"--pwfile={pwfile}",
                 "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                 "--no-sync"], user=self.user, group=self.group, timeout=180)
        finally:
            pwfile.unlink(missing_ok=True)

    def _server_options(self) -> str:
        """Return pg_ctl's -o string (run through sh by pg_ctl): every value validated and quoted."""
        return " ".join(setting_option(name, value) for name, value in self._server_settings().items())

    def _server_settings(self) -> dict[str, str]:
        """The server's settings (paths checked shell-safe: they also reach pg_ctl's shell)."""
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                    "unix_socket_directories": shell_safe_path(self.sockets, "socket folder"),
                    "unix_socket_permissions": "0700",
                    "hba_file": shell_safe_path(self.auth / "pg_hba.conf", "hba file"),
                    "ident_file": shell_safe_path(self.auth / "pg_ident.conf", "ident file"),
                    "password_encryption": "scram-sha-256"}
        shell_safe_path(self.data, "data folder")
        shell_safe_path(self.log_file, "server log")
        if not self.durable:
            # Scratch servers hold copies: durability only costs time here.
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(self.settings)
        return settings

    def _write_auth(self, superusers: tuple[str, ...]) -> None:
        """Write the hba and ident files (outside the data directory, readable by the server only)."""
        self.auth.mkdir(exist_ok=True)
        self.auth.chmod(0o700)
        self.give_to_server_user(self.auth)
        tcp = "hostssl" if self.tls_only else "host"
        hba = "".join(f"local {db} all peer map={IDENT_MAP}\n{tcp} {db} all 127.0.0.1/32 scram-sha-256\n"
                      for db in ("all", "replication"))
        files = {"pg_hba.conf": hba,
                 "pg_ident.conf": "".join(f'{IDENT_MAP} "{_os_user()}" "{role}"\n' for role in superusers)}
        if any(ch in "".join(superusers) for ch in '"\n\r'):
            raise ValueError(f"role names {superusers!r} cannot go into pg_ident.conf")
        for name, text in files.items():
            path = self.auth / name
            tmp = self.auth / f".{name}.new"
            tmp.unlink(missing_ok=True)
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
                handle.write(text)
            self.give_to_server_user(tmp)
            os.replace(tmp, path)

    def _find_superuser(self, timeout: float = 60) -> None:
        """Find a restored cluster's bootstrap superuser (OID 10) through a role the map allows, then
        narrow the ident map to it. Raise RuntimeError when no candidate role can log in."""
        errors = []
        found = None
        for role in self._candidates:
            try:
                with self.local_connection(role, "template1") as conn:
                    found = conn.execute("SELECT rolname FROM pg_roles WHERE oid = 10").fetchone()[0]
                break
            except psycopg.OperationalError as exc:
                errors.append(f"{role}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}")
        if found is None:
            raise RuntimeError("cannot reach the restored server as any of " + ", ".join(self._candidates) + ": "
                               + "; ".join(errors))
        self._write_auth((found,))
        self._pg_ctl("reload", timeout=60)
        self.superuser = found
        deadline = time.monotonic() + timeout
        while True:   # the reload is asynchronous; a role that was not a candidate waits for it
            try:
                self.local_connection(found, "template1").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def wait_until_promoted(self, timeout: float) -> None:
        """Wait until the server has finished recovery. Raise TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.local_connection(dbname="template1") as conn:
            while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"recovery did not finish within {timeout:.0f} s")
                time.sleep(0.5)

    def set_password(self) -> None:
        """Give our bootstrap superuser the in-memory password (never on a restored cluster)."""
        if self.restored or self.password is None:
            raise RuntimeError("a restored cluster keeps its own passwords")
        with self.local_connection() as conn:
            conn.execute(psycopg.sql.SQL("ALTER ROLE postgres PASSWORD {}").format(psycopg.sql.Literal(self.password)))

    def local_connection(self, user: str | None = None, dbname: str = "postgres") -> psycopg.Connection:
        """Return an autocommit connection over the Unix socket (peer, as the bootstrap superuser)."""
        return psycopg.connect(host=str(self.sockets), port=self.port, user=user or self.superuser or "postgres",
                               dbname=dbname, autocommit=True, connect_timeout=10)

    def stop(self) -> None:
        if self.started:
            if self.scratch:
                self._stop_child()
            else:
                self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop", timeout=120)
            self.started = False

    def destroy(self) -> None:
        """Stop the server (if running) and remove its folder (or what we made in a folder we were given)."""
        try:
            self.stop()
        finally:
            if self._own_base:
                shutil.rmtree(self.base, ignore_errors=True)
            else:
                for path in (self.data, self.sockets, self.auth):
                    shutil.rmtree(path, ignore_errors=True)
                self.log_file.unlink(missing_ok=True)

    def _pg_ctl(self, *args, timeout: float) -> None:
        run([self.bin_dir / "pg_ctl", "-D", self.data, *args], user=self.user, group=self.group, timeout=timeout)

    def _check_reachable(self) -> None:
        check_reachable(self.base)

    def give_to_server_user(self, path: Path, recursive: bool = False) -> None:
        """Make `path` (and, with `recursive`, everything under it) owned by the server's user and group,
        so a server run as its own user can use what we prepared for it. A no-op without a server user."""
        if self.user:
            entry = pwd.getpwnam(self.user)
            gid = grp.getgrnam(self.group).gr_gid if self.group else entry.pw_gid
            os.chown(path, entry.pw_uid, gid, follow_symlinks=False)
            if recursive:
                for root, dirs, files in os.walk(path):
                    for name in dirs + files:
                        os.chown(os.path.join(root, name), entry.pw_uid, gid, follow_symlinks=False)

    def __enter__(self) -> LocalServer:
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
        # One name per drill: two drills at once must not drop each other's scratch database.
        name = truncate_bytes(f"ubertruck_drill_{label}", 54) + "_" + secrets.token_hex(4)
        try:
            yield drill_server, name
        finally:
            from ubertruck_ops.tasks import postgres  # late: postgres imports this module's siblings

            with postgres.connect(drill_server, "postgres", autocommit=True) as admin:
                postgres.drop_database(admin, name)
            log.info("dropped scratch database %s on %s:%s", name, drill_server.host, drill_server.port)
        return
    from ubertruck_ops.tasks.postgres import client_bin_dir

    server = LocalServer(client_bin_dir(), scratch=True)
    try:
        server.start()
        log.info("scratch PostgreSQL started on 127.0.0.1:%s in %s", server.port, server.base)
        yield server.database(), "ubertruck_drill"
    finally:
        server.destroy()
        log.info("scratch PostgreSQL stopped and removed")
