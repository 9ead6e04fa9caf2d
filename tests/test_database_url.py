"""DATABASE_URL read as libpq reads it: every parameter kept and handed to psycopg and to the
PostgreSQL tools (through PG* variables, never argv); sslmode defaults for hosts off this machine;
a socket host, several hosts and a certificate check against a server with its own CA, for real."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.variables import environment_from_variables
from ubertruck_ops.flows.nightly_backup import nightly_backup
from ubertruck_ops.flows.restore import restore
from ubertruck_ops.tasks.execute import CommandFailed, run
from ubertruck_ops.tasks.postgres import DatabaseUnreachable, client_tools, tool
from ubertruck_ops.tasks.scratch_postgres import LocalServer, free_port

from tests.helpers import PG15_BIN, make_database, require, save_env
from tests.parts import table_checksums

RDS = ("postgresql://admin:p%40ss@db1.example.com:5432,db2.example.com:5433/ubertruck_prod"
       "?sslmode=verify-full&sslrootcert=/etc/ssl/rds-ca.pem&options=-c%20statement_timeout%3D5s&target_session_attrs=read-write"
       "&application_name=nightly&sslcert=/etc/ssl/me.crt&sslkey=/etc/ssl/me.key")


def test_every_parameter_of_the_url_is_kept_and_the_password_only_in_the_secret():
    db = PostgresDatabase.from_url(RDS)
    assert (db.host, db.port, db.database, db.user) == ("db1.example.com,db2.example.com", 5432, "ubertruck_prod", "admin")
    assert db.password.get_secret_value() == "p@ss"
    assert db.parameters == {"sslrootcert": "/etc/ssl/rds-ca.pem", "options": "-c statement_timeout=5s",
                             "target_session_attrs": "read-write", "application_name": "nightly",
                             "sslcert": "/etc/ssl/me.crt", "sslkey": "/etc/ssl/me.key", "port": "5432,5433"}
    assert "p@ss" not in repr(db.parameters) and "p@ss" not in db.describe()
    assert db.describe() == "database ubertruck_prod on db1.example.com:5432,db2.example.com:5433"


def test_the_tools_get_every_parameter_as_its_pg_variable_and_psycopg_as_keywords():
    db = PostgresDatabase.from_url(RDS)
    env = db.libpq_env()
    assert env == {"PGHOST": "db1.example.com,db2.example.com", "PGPORT": "5432,5433", "PGUSER": "admin",
                   "PGDATABASE": "ubertruck_prod", "PGPASSWORD": "p@ss", "PGSSLMODE": "verify-full",
                   "PGSSLROOTCERT": "/etc/ssl/rds-ca.pem", "PGOPTIONS": "-c statement_timeout=5s",
                   "PGTARGETSESSIONATTRS": "read-write", "PGAPPNAME": "nightly", "PGSSLCERT": "/etc/ssl/me.crt",
                   "PGSSLKEY": "/etc/ssl/me.key", "PGCONNECT_TIMEOUT": "10"}
    kwargs = db.connect_kwargs("other")
    assert kwargs["dbname"] == "other" and kwargs["application_name"] == "nightly"
    assert kwargs["target_session_attrs"] == "read-write" and kwargs["port"] == "5432,5433"
    assert PostgresDatabase.from_url("postgresql://u@h/d").connect_kwargs()["application_name"] == "ubertruck-ops"
    assert "PGAPPNAME" not in PostgresDatabase.from_url("postgresql://u@h/d").libpq_env()


@pytest.mark.parametrize("url, sslmode", [
    ("postgresql://u@db.example.com/d", "require"),
    ("postgresql://u@db.example.com/d?sslrootcert=/etc/ssl/rds-ca.pem", "verify-full"),
    ("postgresql://u@db.example.com/d?sslmode=verify-ca&sslrootcert=/etc/ssl/rds-ca.pem", "verify-ca"),
    ("postgresql://u@db.example.com/d?sslmode=disable&sslrootcert=/x", "disable"),
    ("postgresql://u@/d?host=/run/postgresql", None),
    ("postgresql://u@localhost,127.0.0.2/d", None),
    ("postgresql://u@127.0.0.1,db.example.com/d", "require"),
])
def test_sslmode_defaults_to_tls_off_this_machine_and_an_explicit_one_is_kept(url, sslmode):
    db = PostgresDatabase.from_url(url)
    assert db.sslmode == sslmode
    assert db.libpq_env().get("PGSSLMODE") == sslmode and PostgresDatabase.from_url(db.url()) == db


def test_with_endpoint_keeps_login_and_tls_and_drops_the_old_endpoint():
    db = PostgresDatabase.from_url(RDS + "&hostaddr=10.0.0.1,10.0.0.2")
    moved = db.with_endpoint("restored.example.com", 6432)
    assert (moved.host, moved.port, moved.sslmode, moved.password) == ("restored.example.com", 6432, "verify-full", db.password)
    assert "port" not in moved.parameters and "hostaddr" not in moved.parameters
    assert moved.parameters["sslrootcert"] == "/etc/ssl/rds-ca.pem"
    assert moved.libpq_env()["PGPORT"] == "6432" and db.host == "db1.example.com,db2.example.com"


@pytest.mark.parametrize("url", [
    RDS,
    "postgresql://u@/d?host=/run/postgresql&port=5433&options=-c%20search_path%3Dx%2Cy",
    "postgresql://u%3Ame:p%2Fw%3F%26@[::1]:5/my%20db?sslmode=prefer",
    "postgresql://u@h1,h2/d?target_session_attrs=primary",
    "postgresql://u:pw@127.0.0.1:5432/d",
])
def test_the_url_round_trips_every_parameter(url):
    db = PostgresDatabase.from_url(url)
    assert PostgresDatabase.from_url(db.url()) == db
    libpq = psycopg.conninfo.conninfo_to_dict(db.url())
    assert {k: libpq.get(k) for k in db.parameters if k != "port"} == {k: v for k, v in db.parameters.items() if k != "port"}
    assert (libpq.get("password"), libpq["host"], libpq["dbname"]) == (
        db.password and db.password.get_secret_value(), db.host, db.database)


def test_a_block_made_in_code_keeps_its_integer_port_and_a_socket_host_makes_a_valid_url():
    db = PostgresDatabase(host="/tmp/sock dir", port=6543, database="d", user="u")
    assert PostgresDatabase.from_url(db.url()) == db and db.libpq_env()["PGPORT"] == "6543"
    assert PostgresDatabase(database="d", user="u").url() == "postgresql://u@localhost:5432/d"


@pytest.mark.parametrize("url, message", [
    ("mysql://u@h/d", "must start with postgresql://"),
    ("postgresql://h/d", "must name a user and a database"),
    ("postgresql://u:hunter2@h/d?bogus=1", "not a valid libpq URL"),
    ("postgresql://u@h/d?sslpassword=hunter2", "sslpassword is not supported"),
    ("postgresql://u@/d?host=h1,h2,h3&port=1,2", "2 ports for 3 hosts"),
])
def test_a_bad_url_is_refused_without_repeating_its_password(url, message):
    with pytest.raises(ValueError, match=message) as caught:
        PostgresDatabase.from_url(url)
    assert "hunter2" not in str(caught.value)


def test_drill_database_url_keeps_its_parameters_too():
    env = environment_from_variables({
        "DATABASE_URL": RDS, "BACKUP_ENCRYPTION_KEY": "k", "BACKUP_REPOSITORY": "/var/backups/x",
        "DRILL_DATABASE_URL": "postgresql://drill@drill.example.com/postgres?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"})
    assert env.database.parameters["target_session_attrs"] == "read-write"
    assert env.drill_database.sslmode == "verify-full"
    assert env.drill_database.parameters == {"sslrootcert": "/etc/ssl/ca.pem"}


def _psql(db: PostgresDatabase, sql: str, psql: str | None = None) -> str:
    proc = run([psql or tool("psql"), "-X", "-At", "-c", sql], env=db.libpq_env(), timeout=30,
               secrets=[db.password.get_secret_value()] if db.password else [])
    return proc.stdout.decode().strip()


def test_a_socket_host_in_the_url_connects_with_psycopg_and_with_the_tools(pg18):
    db = PostgresDatabase.from_url(f"postgresql://postgres@/postgres?host={pg18.sockets}&port={pg18.port}"
                                   "&options=-c%20statement_timeout%3D4321")
    assert db.host == str(pg18.sockets) and db.sslmode is None
    with psycopg.connect(**db.connect_kwargs()) as conn:
        # A socket connection has no server address.
        assert conn.execute("SELECT inet_server_addr() IS NULL, current_setting('statement_timeout')").fetchone() \
            == (True, "4321ms")
    assert _psql(db, "SELECT inet_server_addr() IS NULL, current_setting('statement_timeout')") == "t|4321ms"


def test_several_hosts_skip_a_dead_first_one_with_psycopg_and_with_the_tools(pg18):
    dead = free_port()
    db = PostgresDatabase.from_url(f"postgresql://postgres:{pg18.password}@127.0.0.1:{dead},127.0.0.1:{pg18.port}"
                                   "/postgres?target_session_attrs=read-write&connect_timeout=5")
    assert db.port == dead and db.parameters["port"] == f"{dead},{pg18.port}"
    with psycopg.connect(**db.connect_kwargs()) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone()[0] == pg18.port
    assert _psql(db, "SELECT inet_server_port()") == str(pg18.port)
    dump = run([tool("pg_dump"), "--schema-only"], env=db.libpq_env(), timeout=60,
               secrets=[pg18.password])
    assert b"PostgreSQL database dump complete" in dump.stdout


def _openssl(*args: str, cwd: Path) -> None:
    run(["openssl", *args], cwd=cwd, timeout=30)


def _make_ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A PostgreSQL 15 server (Debian's: built with OpenSSL) with ssl=on, TCP over TLS only, and a
    certificate for db.test, localhost and 127.0.0.1 signed by a CA of its own; it logs every
    connection (with its TLS state). Yields (server, folder with the CAs)."""
    require((PG15_BIN / "postgres").exists(),
            "PostgreSQL 15 server binaries are missing: apt-get install -y postgresql-15")
    cas = tmp_path_factory.mktemp("cas")
    _make_ca(cas, "right-ca")
    _make_ca(cas, "wrong-ca")
    base = Path(tempfile.mkdtemp(prefix="ubertruck-tls-"))
    tls = base / "tls"
    tls.mkdir()
    server = LocalServer(PG15_BIN, base, tls_only=True,
                         settings={"ssl": "on", "ssl_cert_file": str(tls / "server.crt"),
                                   "ssl_key_file": str(tls / "server.key"), "log_connections": "on"})
    (tls / "san.ext").write_text("subjectAltName=DNS:db.test,DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=db.test", cwd=tls)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(cas / "right-ca.crt"), "-CAkey", str(cas / "right-ca.key"),
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=tls)
    (tls / "server.key").chmod(0o600)
    tls.chmod(0o700)
    for path in (tls, tls / "server.key", tls / "server.crt"):
        server.give_to_server_user(path)
    try:
        server.start()
        yield server, cas
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


def _tls_url(server: LocalServer, ca: Path, user: str = "postgres", password: str | None = None,
             database: str = "postgres", sslmode: str | None = "verify-full") -> str:
    # A host name off this machine, reached through hostaddr; the certificate must name it.
    return (f"postgresql://{user}:{password or server.password}@db.test:{server.port}/{database}?hostaddr=127.0.0.1"
            f"&sslrootcert={ca}" + (f"&sslmode={sslmode}" if sslmode else ""))


def test_sslrootcert_checks_the_server_certificate_and_a_wrong_ca_is_refused(tls_server):
    server, cas = tls_server
    db = PostgresDatabase.from_url(_tls_url(server, cas / "right-ca.crt"))
    assert db.sslmode == "verify-full"
    with psycopg.connect(**db.connect_kwargs()) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0] is True
    # The project's embedded PostgreSQL 18 tools are built without OpenSSL; Debian's are chosen.
    psql = tool("psql", 15, db.sslmode)
    assert psql == str(PG15_BIN / "psql")
    assert _psql(db, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", psql) == "t"

    wrong = PostgresDatabase.from_url(_tls_url(server, cas / "wrong-ca.crt"))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(**wrong.connect_kwargs()).close()
    with pytest.raises(CommandFailed, match="certificate verify failed"):
        _psql(wrong, "SELECT 1", str(PG15_BIN / "psql"))


def test_a_backup_and_a_restore_over_verified_tls_by_default_use_the_hosts_tls_tools(tls_server, local_repo):
    server, cas = tls_server
    plain = make_database(server, size_mb=1)
    # No sslmode in the URL: a host off this machine with a root certificate gets verify-full.
    source = PostgresDatabase.from_url(_tls_url(server, cas / "right-ca.crt", plain.user,
                                                plain.password.get_secret_value(), plain.database, sslmode=None))
    assert source.sslmode == "verify-full"
    assert client_tools(15, source.sslmode).folder == str(PG15_BIN)
    repo = BackupRepository(url=str(local_repo))
    env = save_env(source, repo)
    before = table_checksums(source)
    mark = server.log_file.stat().st_size

    nightly_backup(environment=env)
    target = PostgresDatabase.from_url(_tls_url(server, cas / "right-ca.crt", database=f"{plain.database}_restored",
                                                sslmode=None))
    restore(environment=env, target_environment=save_env(target, repo))

    assert table_checksums(target) == before
    # The server takes TCP over TLS only (hostssl), and says which tool came in how.
    log = server.log_file.read_text(errors="replace")[mark:]
    for name in ("pg_dump", "psql"):
        assert re.search(rf"connection authorized: .*application_name={name} SSL enabled", log), name


def test_a_backup_checking_against_another_ca_is_refused_by_name(tls_server, local_repo):
    server, cas = tls_server
    wrong = PostgresDatabase.from_url(_tls_url(server, cas / "wrong-ca.crt", sslmode=None))
    env = save_env(wrong, BackupRepository(url=str(local_repo)))
    with pytest.raises(DatabaseUnreachable, match=r"cannot connect to database postgres on db\.test:\d+ .*"
                                                  r"certificate verify failed"):
        nightly_backup(environment=env)
    assert not list(local_repo.rglob("manifest.json"))


def test_several_hosts_with_a_dead_first_one_and_verified_tls(tls_server):
    server, cas = tls_server
    dead = free_port()
    db = PostgresDatabase.from_url(f"postgresql://postgres:{server.password}@dead.test:{dead},db.test:{server.port}"
                                   f"/postgres?hostaddr=127.0.0.1,127.0.0.1&sslrootcert={cas / 'right-ca.crt'}")
    assert db.sslmode == "verify-full"
    query = "SELECT ssl, inet_server_port() FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    with psycopg.connect(**db.connect_kwargs()) as conn:
        assert conn.execute(query).fetchone() == (True, server.port)
    assert _psql(db, query, tool("psql", 15, db.sslmode)) == f"t|{server.port}"
