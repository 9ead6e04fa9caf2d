"""The PostgreSQL database an environment runs on."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, unquote, urlsplit

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class PostgresDatabase(Block):
    """Where a PostgreSQL database lives and how to log in to it."""

    _block_type_name = "Ubertruck Postgres Database"
    _block_type_slug = "ubertruck-postgres-database"
    _description = "A PostgreSQL database: host, port, name and login. The password is a secret."

    host: str = Field(default="localhost", title="Host", description="Server host name or address.")
    port: int = Field(default=5432, title="Port", description="Server TCP port.")
    database: str = Field(title="Database", description="Database name, e.g. ubertruck_prod.")
    user: str = Field(title="User", description="Role to log in as; backups need read access to every table.")
    password: SecretStr | None = Field(default=None, title="Password", description="Password of the role.")
    sslmode: str | None = Field(default=None, title="SSL mode", description="libpq sslmode, e.g. require.")

    @classmethod
    def from_url(cls, url: str) -> "PostgresDatabase":
        """Given a postgresql:// URL, return the block. Raise ValueError when it names no database or user."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError("DATABASE_URL must start with postgresql://")
        database = unquote(parts.path.lstrip("/"))
        if not database or not parts.username:
            raise ValueError("DATABASE_URL must name a user and a database: postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname or "localhost", port=parts.port or 5432, database=database,
            user=unquote(parts.username),
            password=SecretStr(unquote(parts.password)) if parts.password else None,
            sslmode=query.get("sslmode", [None])[0],
        )

    def describe(self) -> str:
        """Return 'database on host:port' for messages; never the password."""
        return f"database {self.database} on {self.host}:{self.port}"

    def libpq_env(self, database: str | None = None) -> dict[str, str]:
        """Return the PG* variables that point libpq tools at this database (password included)."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
               "PGDATABASE": database or self.database, "PGCONNECT_TIMEOUT": "10"}
        if self.password is not None:
            env["PGPASSWORD"] = self.password.get_secret_value()
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env

    def url(self) -> str:
        """Return the postgresql:// URL of this database, password included: for a child's
        environment (DATABASE_URL), never for argv or logs."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        query = f"?sslmode={quote(self.sslmode)}" if self.sslmode else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.database, safe='')}{query}"

    def connect_kwargs(self, database: str | None = None) -> dict:
        """Return keyword arguments for psycopg.connect."""
        kwargs = {"host": self.host, "port": self.port, "user": self.user, "dbname": database or self.database,
                  "connect_timeout": 10, "application_name": "ubertruck-ops"}
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.sslmode:
            kwargs["sslmode"] = self.sslmode
        return kwargs

    def same_database_as(self, other: "PostgresDatabase") -> bool:
        """Return True when both blocks name the same database on the same server."""
        local = {"localhost", "127.0.0.1", "::1"}

        def server(db: "PostgresDatabase") -> tuple:
            return ("local" if db.host in local else db.host.lower(), db.port, db.database)

        return server(self) == server(other)
