"""The application host: where releases live, how PM2 runs them, where the frontend goes."""

from __future__ import annotations

from urllib.parse import urlsplit

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass
from ubertruck_ops.core.audit import check_level
from ubertruck_ops.core.names import service_problem

# The guide's application host. The fields below own these defaults; everything else (blocks init,
# the archive's sources, the sandbox) reads them from the class: `default_of(AppHost, "app_root")`.
DEFAULT_SERVICES = {"user-service": 3001, "fleet-service": 3002, "booking-service": 3003, "route-service": 3004,
                    "payment-service": 3005, "admin-service": 3006}


def default_of(block_cls: type, field: str):
    """Return the default value of `field` of a block class (a fresh copy for factory defaults)."""
    return block_cls.model_fields[field].get_default(call_default_factory=True)


class AppHost(SchemaOncePerClass, Block):
    """The host that runs Ubertruck's services under PM2 (the application host contract: docs/deploys.md)."""

    _block_type_name = "Ubertruck App Host"
    _block_type_slug = "ubertruck-app-host"
    _description = "Releases folder, services and ports, PM2, web root and nginx reload of the application host."

    app_root: str = Field(default="/opt/ubertruck", title="App root",
                          description="Holds releases/<tag>, current (the live release) and shared/.")
    repo_url: str | None = Field(default=None, title="Repository URL",
                                 description="Git URL of the application (tags vX.Y.Z). Use a deploy key, not a "
                                             "token in the URL.")
    services: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_SERVICES), title="Services",
                                     description="Service folder -> port; PM2 runs <folder>/dist/main.js with PORT.")
    instances: int = Field(default=1, ge=1, title="Instances per service", description="PM2 cluster instances.")
    handover_batch_size: int | None = Field(default=None, ge=1, title="Hand-over batch size",
                                            description="How many services change release together (start the "
                                                        "new apps, wait until ready, stop the old ones). Empty: "
                                                        "all at once; 1: one after another.")
    web_root: str | None = Field(default="/var/www/html", title="Web root",
                                 description="Where nginx serves the frontend from; managed as a symlink to the "
                                             "release's frontend/dist. Empty: no frontend.")
    log_dir: str | None = Field(default="/var/log/ubertruck", title="Log folder",
                                description="PM2 writes <service>-out.log and <service>-error.log here; "
                                            "empty: APP_ROOT/shared/logs.")
    pm2_home: str | None = Field(default=None, title="PM2_HOME", description="PM2's home (default ~/.pm2).")
    pm2_command: str = Field(default="pm2", title="pm2 command", description="pm2 on PATH, or its full path.")
    nginx_reload_command: str | None = Field(default=None, title="nginx reload command",
                                             description="Run after the frontend is published, e.g. "
                                                         "'sudo systemctl reload nginx'. Empty: skipped.")
    audit_level: str = Field(default="high", title="npm audit level",
                             description="A release whose runtime dependencies have a vulnerability at this level "
                                         "or above (info, low, moderate, high, critical) is refused. A registry "
                                         "that cannot be asked or refuses audits is a warning, not a failure.")
    audit_registry: str | None = Field(default=None, title="npm audit registry",
                                       description="Where npm audit sends its bulk advisory request; empty: npm's "
                                                   "own registry.")
    smoke_urls: list[str] = Field(default_factory=list, title="Smoke URLs",
                                  description="After go-live each must answer 2xx (through the balancer or the "
                                              "public URL), or the release is put back (SMOKE_URLS, comma-separated).")
    smoke_timeout_seconds: float = Field(default=30, gt=0, title="Smoke timeout (s)",
                                         description="How long each smoke URL has to answer 2xx (SMOKE_TIMEOUT).")
    bake_minutes: float = Field(default=5, ge=0, title="Bake window (min)",
                                description="After the smoke test the deploy watches the nginx access log "
                                            "(WATCH_ACCESS_LOG) this long and puts the release back when its 5xx "
                                            "share or p95 passes the critical line; 0: off (BAKE_MINUTES).")
    keep_releases: int = Field(default=5, ge=2, title="Releases kept",
                               description="Newest releases kept on the host; the live and previous never go.")
    health_timeout_seconds: float = Field(default=60, gt=0, title="Health gate deadline (s)",
                                          description="How long every service has to pass /health, /health/ready "
                                                      "and /health/live reporting the new version.")
    deploy_lock_wait_seconds: float = Field(default=900, ge=0, title="Deploy lock wait (s)",
                                            description="How long a deploy or rollback waits for another one "
                                                        "before it is refused.")
    migrations_dir: str = Field(default="user-service/migrations", title="Migrations folder",
                                description="Folder of *.sql migrations inside a release; a release 'brings new "
                                            "migrations' when one of them is not in the migrations table.")
    migrations_table: str = Field(default="schema_migrations", title="Migrations table",
                                  description="Table (column name) recording applied migrations.")

    @field_validator("repo_url")
    @classmethod
    def _no_password_in_url(cls, value: str | None) -> str | None:
        parts = urlsplit(value) if value else None
        # A token also works as the user name alone (https://TOKEN@host/...); ssh://git@host is a key login.
        if parts and (parts.password or (parts.username and parts.scheme in ("http", "https"))):
            raise ValueError("APP_REPO_URL must not carry a password or token (it would show in logs and process "
                             "lists); use an SSH deploy key or a git credential helper")
        return value

    @field_validator("audit_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        return check_level(value)

    @field_validator("services")
    @classmethod
    def _services_are_names_and_ports(cls, value: dict[str, int]) -> dict[str, int]:
        # A saved block is checked too (the UI, an older release): names become paths under the release.
        problems = [p for p in (service_problem(name, port) for name, port in value.items()) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @property
    def releases_dir(self) -> str:
        return f"{self.app_root.rstrip('/')}/releases"

    @property
    def current_link(self) -> str:
        return f"{self.app_root.rstrip('/')}/current"

    @property
    def shared_dir(self) -> str:
        return f"{self.app_root.rstrip('/')}/shared"

    @property
    def logs(self) -> str:
        return self.log_dir or f"{self.shared_dir}/logs"


def parse_services(text: str) -> dict[str, int]:
    """Given APP_SERVICES ('name:port,name:port'), return name -> port. Raise ValueError naming
    APP_SERVICES on a bad item: a name that is not lowercase letters, digits and dashes (it becomes a
    path), a port outside 1-65535, a name given twice."""
    services = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, port = item.partition(":")
        if not sep or not name or not port.isdigit():
            raise ValueError(f"APP_SERVICES item {item!r} must be name:port")
        problem = service_problem(name, int(port))
        if problem:
            raise ValueError(f"APP_SERVICES item {item!r}: {problem}")
        if name in services:
            raise ValueError(f"APP_SERVICES names service {name} twice")
        services[name] = int(port)
    if not services:
        raise ValueError("APP_SERVICES names no service")
    return services
