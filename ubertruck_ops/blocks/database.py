"""The PostgreSQL database an environment runs on."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import psycopg
from prefect.blocks.core import Block
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass
from ubertruck_ops.core.connection import default_sslmode, is_ip_address, is_valid_host
from ubertruck_ops.core.restore_rules import server_identity

# libpq's environment variable for each connection keyword (libpq "Environment Variables"), so the
# PostgreSQL tools get the URL's parameters without argv. Keywords missing here have no variable
# (keepalives, tcp_user_timeout...): psycopg still gets them, the tools do not.
LIBPQ_ENV = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
    "password": "PGPASSWORD", "passfile": "PGPASSFILE", "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING", "service": "PGSERVICE", "servicefile": "PGSERVICEFILE",
    "options": "PGOPTIONS", "application_name": "PGAPPNAME", "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION", "requiressl": "PGREQUIRESSL", "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcertmode": "PGSSLCERTMODE", "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL", "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI", "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION", "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "min_protocol_version": "PGMINPROTOCOLVERSION", "max_protocol_version": "PGMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE", "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION", "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING", "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
# Held in fields of their own (or refused), never in `parameters`.
_OWN_FIELDS = {"host", "port", "dbname", "user", "password", "sslmode"}
# Secrets libpq takes that have no environment variable: they would have to travel in argv or a file.
_REFUSED = {"sslpassword": "the client key's password cannot reach the PostgreSQL tools safely; "
                           "use an unencrypted key file readable only by this user"}


class PostgresDatabase(SchemaOncePerClass, Block):
    """Where a PostgreSQL database lives and how to log in to it."""

    _block_type_name = "Ubertruck Postgres Database"
    _block_type_slug = "ubertruck-postgres-database"
    _description = "A PostgreSQL database: host, port, name and login. The password is a secret."

    host: str = Field(default="localhost", title="Host",
                      description="Server host name, address or socket folder; several hosts separated by commas "
                                  "(libpq tries them in order).")
    port: int = Field(default=5432, title="Port",
                      description="Server TCP port (the first host's when hosts have different ports; "
                                  "then parameters holds the full list).")
    database: str = Field(title="Database", description="Database name, e.g. ubertruck_prod.")
    user: str = Field(title="User", description="Role to log in as; backups need read access to every table.")
    password: SecretStr | None = Field(default=None, title="Password", description="Password of the role.")
    sslmode: str | None = Field(default=None, title="SSL mode",
                                description="libpq sslmode, e.g. require. From DATABASE_URL: require by default for "
                                            "a host (or hostaddr) off this machine, verify-full when sslrootcert "
                                            "is given.")
    parameters: dict[str, str] = Field(
        default_factory=dict, title="Connection parameters",
        description="Every other libpq parameter of DATABASE_URL (sslrootcert, options, target_session_attrs...), "
                    "passed to psycopg and to the PostgreSQL tools; never a secret.")

    @classmethod
    def from_url(cls, url: str, variable: str = "DATABASE_URL") -> PostgresDatabase:
        """Given a postgresql:// URL (read from `variable`, which messages name), return the block with
        every parameter of it kept. Raise ValueError, quoting nothing of the URL, when it is not a valid
        libpq URL, names no database or user, or has a host that is no host (a password's unencoded @)."""
        if not url.startswith(("postgres://", "postgresql://")):
            raise ValueError(f"{variable} must start with postgresql://")
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            # libpq's message quotes the faulty part; it can hold the password, so it is not repeated.
            raise ValueError(f"{variable} is not a valid libpq URL (check its parameters' names and "
                             "percent-encoding): postgresql://USER:PASSWORD@HOST:PORT/DATABASE?param=value") from None
        params = {k: str(v) for k, v in params.items()}
        for name, why in _REFUSED.items():
            if name in params:
                raise ValueError(f"{variable} parameter {name} is not supported: {why}")
        if not params.get("dbname") or not params.get("user"):
            raise ValueError(f"{variable} must name a user and a database: "
                             "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
        _refuse_leaked_user_info(params, variable)
        host = params.get("host") or "localhost"
        hosts = host.split(",")
        port, ports = _ports(params.get("port", ""), len(hosts), variable)
        extra = {k: v for k, v in params.items() if k not in _OWN_FIELDS}
        if ports:
            extra["port"] = ports
        # Off this machine TLS by default (the guide's RDS), checked against sslrootcert when given;
        # the tools are then chosen among TLS-capable ones (tasks/postgres.client_tools).
        sslmode = default_sslmode(host, params.get("sslmode"), params.get("sslrootcert"), params.get("requiressl"),
                                  params.get("hostaddr"))
        return cls(host=host, port=port, database=params["dbname"], user=params["user"],
                   password=SecretStr(params["password"]) if params.get("password") else None,
                   sslmode=sslmode, parameters=extra)

    def _ports(self) -> str:
        return self.parameters.get("port") or str(self.port)

    def describe(self) -> str:
        """Return 'database on host:port' for messages; never the password."""
        hosts, ports = self.host.split(","), self._ports().split(",")
        if len(hosts) > 1 and len(ports) == len(hosts):
            return f"database {self.database} on " + ",".join(f"{h}:{p}" for h, p in zip(hosts, ports))
        return f"database {self.database} on {self.host}:{self._ports()}"

    def conninfo(self, database: str | None = None) -> dict[str, str]:
        """Return every libpq keyword of this database with its value, password included."""
        info = {"connect_timeout": "10", **self.parameters,
                "host": self.host, "port": self._ports(), "user": self.user, "dbname": database or self.database}
        if self.password is not None:
            info["password"] = self.password.get_secret_value()
        if self.sslmode:
            info["sslmode"] = self.sslmode
        return info

    def libpq_env(self, database: str | None = None) -> dict[str, str]:
        """Return the PG* variables that point libpq tools at this database (password included)."""
        return {LIBPQ_ENV[k]: v for k, v in self.conninfo(database).items() if k in LIBPQ_ENV}

    def url(self) -> str:
        """Return the postgresql:// URL of this database, every parameter and the password included:
        for a child's environment (DATABASE_URL), never for argv or logs."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        query = {k: v for k, v in self.parameters.items() if k != "port"}
        hosts, ports = self.host.split(","), self._ports().split(",")
        if any(h.startswith(("/", "@")) for h in hosts):
            netloc, query = auth + "@", {"host": self.host, "port": self._ports(), **query}
        else:
            bracket = [f"[{h}]" if ":" in h else h for h in hosts]
            if len(ports) == 1:
                ports = ports * len(hosts)
            netloc = auth + "@" + ",".join(f"{h}:{p}" for h, p in zip(bracket, ports))
        if self.sslmode:
            query["sslmode"] = self.sslmode
        suffix = "?" + urlencode(query, quote_via=quote, safe="/") if query else ""
        return f"postgresql://{netloc}/{quote(self.database, safe='')}{suffix}"

    def with_endpoint(self, host: str, port: int) -> PostgresDatabase:
        """Return a copy of this block pointing at another server (one host and port: a restored RDS
        instance, a replica), with the same login, sslmode and parameters; a hostaddr or port list of
        the old endpoint is dropped."""
        parameters = {k: v for k, v in self.parameters.items() if k not in ("port", "hostaddr")}
        # A new block, not a model copy: a copy would keep this block's document id and save over it.
        return type(self)(host=host, port=port, database=self.database, user=self.user, password=self.password,
                          sslmode=self.sslmode, parameters=parameters)

    def connect_kwargs(self, database: str | None = None) -> dict:
        """Return keyword arguments for psycopg.connect."""
        # Only our own sessions are named; the tools keep their own names (pg_receivewal's matters
        # to synchronous_standby_names) unless the URL sets one.
        return {"application_name": "ubertruck-ops", **self.conninfo(database)}

    def same_database_as(self, other: PostgresDatabase) -> bool:
        """Return True when both blocks name the same database on the same server (core/restore_rules)."""
        return (server_identity(self.host, self._ports(), self.database)
                == server_identity(other.host, other._ports(), other.database))


def _refuse_leaked_user_info(params: dict[str, str], variable: str) -> None:
    """Raise ValueError when a host, hostaddr or the database name cannot be what it claims: libpq ends
    the password at its first unencoded @ (or /) and reads the rest as host or database, fields that
    are not secret and travel into logs, Slack and the Prefect database. The message quotes none of it."""
    hosts = params.get("host", "").split(",")
    addresses = [a for a in params.get("hostaddr", "").split(",") if a]
    if not all(is_valid_host(h.strip()) for h in hosts) or not all(is_ip_address(a) for a in addresses):
        raise ValueError(f"{variable} has a host that is not a host name, an IP address or a socket folder (an "
                         "absolute path); this happens when the password holds an unencoded @: percent-encode @ as "
                         "%40 (and / as %2F, : as %3A, # as %23) in the password. Nothing of the URL is repeated here")
    if any(c in params["dbname"] for c in "@/"):
        raise ValueError(f"{variable} has a database name holding @ or /; this happens when the password holds an "
                         "unencoded @ or /: percent-encode @ as %40 and / as %2F in the password. Nothing of the URL "
                         "is repeated here")


def _ports(value: str, hosts: int, variable: str = "DATABASE_URL") -> tuple[int, str | None]:
    """Given libpq's port value and the number of hosts, return (first port, the full comma list or
    None when one port serves every host). Raise ValueError on a port that is not a number."""
    given = value.split(",") if value else [""]
    if len(given) not in (1, hosts):
        raise ValueError(f"{variable} gives {len(given)} ports for {hosts} hosts")
    filled = [p or "5432" for p in given]
    if not all(p.isdigit() and 0 < int(p) < 65536 for p in filled):
        # Not quoted: with an unencoded @ in the password, the port can hold part of it.
        raise ValueError(f"{variable} has a port that is not a number from 1 to 65535; if the password holds an "
                         "unencoded @ or :, percent-encode @ as %40 and : as %3A")
    if len(set(filled)) == 1:
        return int(filled[0]), None
    return int(filled[0]), ",".join(filled)
