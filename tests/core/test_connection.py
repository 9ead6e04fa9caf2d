"""The sslmode a DATABASE_URL gets by default, and which hosts are this machine."""

import pytest

from ubertruck_ops.core.connection import (
    ClientTools,
    choose_client_tools,
    default_sslmode,
    is_local_host,
    is_valid_host,
    needs_tls,
    no_client_tools_message,
)


@pytest.mark.parametrize("host", ["", "localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "/run/postgresql",
                                  "/tmp/sock dir", "@abstract"])
def test_local_hosts(host):
    assert is_local_host(host)


@pytest.mark.parametrize("host", ["db.example.com", "10.0.0.5", "128.0.0.1", "::2", "fe80::1", "localhost.example.com",
                                  "mydb.abc.ap-south-1.rds.amazonaws.com"])
def test_hosts_off_this_machine(host):
    assert not is_local_host(host)


@pytest.mark.parametrize("hosts, sslmode, rootcert, expected", [
    ("db.example.com", None, None, "require"),
    ("db.example.com", None, "/etc/ssl/rds-ca.pem", "verify-full"),
    ("db.example.com", "disable", None, "disable"),
    ("db.example.com", "prefer", "/etc/ssl/rds-ca.pem", "prefer"),
    ("db.example.com", "verify-ca", "/etc/ssl/rds-ca.pem", "verify-ca"),
    ("localhost", None, None, None),
    ("/run/postgresql", None, None, None),
    ("127.0.0.1", None, "/etc/ssl/ca.pem", "verify-full"),
    ("127.0.0.1,localhost,/run/postgresql", None, None, None),
    ("127.0.0.1,db.example.com", None, None, "require"),
    ("db1.example.com,db2.example.com", None, None, "require"),
])
def test_default_sslmode(hosts, sslmode, rootcert, expected):
    assert default_sslmode(hosts, sslmode, rootcert) == expected


def test_legacy_requiressl_is_left_to_libpq():
    assert default_sslmode("db.example.com", None, None, requiressl="1") is None


@pytest.mark.parametrize("sslmode, expected", [
    ("require", True), ("verify-ca", True), ("verify-full", True), ("VERIFY-FULL", True),
    ("prefer", False), ("allow", False), ("disable", False), (None, False), ("", False)])
def test_needs_tls(sslmode, expected):
    assert needs_tls(sslmode) is expected


WHEEL = ClientTools("/venv/pginstall/bin", 18, False)
DEBIAN15 = ClientTools("/usr/lib/postgresql/15/bin", 15, True)
DEBIAN16 = ClientTools("/usr/lib/postgresql/16/bin", 16, True)


@pytest.mark.parametrize("candidates, server, sslmode, expected", [
    ([WHEEL, DEBIAN15], 15, None, WHEEL),                  # newest wins without TLS
    ([WHEEL, DEBIAN15], 15, "prefer", WHEEL),
    ([WHEEL, DEBIAN15], 15, "require", DEBIAN15),          # TLS asked: the wheel cannot
    ([WHEEL, DEBIAN15], 15, "verify-full", DEBIAN15),
    ([WHEEL, DEBIAN15, DEBIAN16], 15, "verify-ca", DEBIAN16),
    ([WHEEL, DEBIAN15], 13, "require", DEBIAN15),          # newer than the server is fine
    ([WHEEL, DEBIAN15], 16, "require", None),              # older than the server is not
    ([WHEEL, DEBIAN15], 18, None, WHEEL),
    ([WHEEL, DEBIAN15], 19, None, None),
    ([WHEEL, DEBIAN15], None, None, WHEEL),
    ([WHEEL, DEBIAN15], None, "require", DEBIAN15),
    ([WHEEL, ClientTools("/usr/lib/postgresql/18/bin", 18, True)], 18, None, WHEEL),   # first among equals
    ([], 15, None, None),
])
def test_choose_client_tools(candidates, server, sslmode, expected):
    assert choose_client_tools(candidates, server, sslmode) == expected


def test_no_client_tools_names_the_server_the_sslmode_and_the_install_command():
    text = no_client_tools_message("pg_dump", 16, "verify-full", [WHEEL, DEBIAN15])
    assert "pg_dump for a PostgreSQL 16 server with sslmode=verify-full" in text
    assert "PostgreSQL 16 or newer built with TLS" in text
    assert "`sudo apt-get install -y postgresql-client-16`" in text
    assert "PostgreSQL 15 in /usr/lib/postgresql/15/bin (with TLS)" in text
    assert "sslmode=prefer or sslmode=disable in DATABASE_URL, and only on a trusted network" in text


def test_a_server_newer_than_the_shipped_tools_without_tls_gets_no_unencrypted_advice():
    text = no_client_tools_message("pg_restore", 19, None, [WHEEL, DEBIAN15])
    assert "sslmode=prefer (libpq's default)" in text and "postgresql-client-19" in text
    assert "TLS (OpenSSL)" not in text and "trusted network" not in text


@pytest.mark.parametrize("host", ["db.example.com", "db", "my_db-1.internal.", "10.0.0.5", "::1", "[fe80::1]",
                                  "/run/postgresql", "/tmp/sock dir", "@abstract", "",
                                  "mydb.abc.ap-south-1.rds.amazonaws.com"])
def test_host_names_addresses_and_socket_folders_are_hosts(host):
    assert is_valid_host(host)


@pytest.mark.parametrize("host", ["ssw0rd@db", "ss@w0rd@db.example.com", "evil host", "db:5432", "-h", "a..b",
                                  "/tmp/x@y", "@a@b", "x" * 64 + ".example.com", "db/x"])
def test_what_an_unencoded_at_in_the_password_leaves_in_the_host_is_no_host(host):
    assert not is_valid_host(host)


@pytest.mark.parametrize("hosts, hostaddr, expected", [
    ("localhost", "10.0.0.5", "require"),                 # libpq connects to the address, not to localhost
    ("/run/postgresql", "192.168.1.20", "require"),
    ("127.0.0.1,localhost", "127.0.0.1,10.0.0.5", "require"),
    ("localhost", "127.0.0.1,10.0.0.5", "require"),         # does not pair up: every address counts
    ("db.example.com", "127.0.0.1", None),                  # an SSH tunnel: the connection stays on this machine
    ("db.example.com,localhost", ",127.0.0.1", "require"),  # the first goes to db.example.com itself
    ("localhost", "", None),
])
def test_a_hostaddr_off_this_machine_makes_the_server_remote_whatever_the_host_says(hosts, hostaddr, expected):
    assert default_sslmode(hosts, None, None, None, hostaddr) == expected
