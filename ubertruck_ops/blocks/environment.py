"""The one place that maps an environment name to its blocks, and variables to blocks.

Blocks of environment NAME are saved as NAME-database, NAME-encryption, ... so that
flows take only `environment: str` and load their secrets themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import SecretStr, ValidationError

from ubertruck_ops.blocks.app import AppHost, default_of, parse_services
from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.blocks.load_balancer import LoadBalancer, load_balancer_from_variables
from ubertruck_ops.blocks.monitoring import BusinessQueries, CheckThresholds, RedisCache
from ubertruck_ops.blocks.rds import RdsInstance
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.slack import SlackNotices

DEFAULT_APP_ROOT = default_of(AppHost, "app_root")


@dataclass
class Environment:
    """Every block an operation may need, for one environment."""

    database: PostgresDatabase
    encryption: BackupEncryption
    repository: BackupRepository
    slack: SlackNotices
    archive: ArchiveSources
    drill_database: PostgresDatabase | None = None
    app: AppHost | None = None
    thresholds: CheckThresholds | None = None
    queries: BusinessQueries | None = None
    redis: RedisCache | None = None
    rds: RdsInstance | None = None
    fleet: AppFleet | None = None
    load_balancer: LoadBalancer | None = None


_OPTIONAL = {"drill_database", "app", "thresholds", "queries", "redis", "rds", "fleet", "load_balancer"}


def block_name(environment: str, part: str) -> str:
    """Return the block document name of one part of an environment, e.g. production-database."""
    if not environment or not all(c.islower() or c.isdigit() or c == "-" for c in environment):
        raise ValueError(f"environment name {environment!r} must be lowercase letters, digits and dashes")
    return f"{environment}-{part.replace('_', '-')}"


def load_environment(environment: str) -> Environment:
    """Given an environment name, return its blocks. Raise ValueError naming the missing block."""
    loaded = {}
    for item in fields(Environment):
        block_cls = _block_class(item.name)
        name = block_name(environment, item.name)
        try:
            loaded[item.name] = block_cls.load(name)
        except Exception as exc:  # noqa: BLE001 - sorted into missing and malformed below
            invalid = _validation_error(exc)
            if invalid is None and not (isinstance(exc, ValueError) and "Unable to find block" in str(exc)):
                raise
            if invalid is not None:
                raise ValueError(f"block {block_cls.get_block_type_slug()}/{name} is malformed ({_reasons(invalid)}): "
                                 f"fix it in the UI or run `ubertruck-ops blocks init --name {environment}` "
                                 "again") from None
            if item.name in _OPTIONAL:
                loaded[item.name] = None
                continue
            raise ValueError(f"block {block_cls.get_block_type_slug()}/{name} not found: "
                             f"run `ubertruck-ops blocks init --name {environment}` first") from None
    return Environment(**loaded)


def _validation_error(exc: BaseException | None) -> ValidationError | None:
    """The pydantic error behind a failed load (Prefect wraps it in a RuntimeError), or None."""
    while exc is not None:
        if isinstance(exc, ValidationError):
            return exc
        exc = exc.__cause__
    return None


def _reasons(error: ValidationError) -> str:
    """What failed, by field, never the value (pydantic's own text quotes the input: a secret)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors())


def _build(block_cls, variables: Mapping[str, str], **fields):
    """Construct a block from variables (`variables`: field -> variable name); a refused value is an
    error naming the variable, never the value."""
    try:
        return block_cls(**fields)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"environment variable {variables.get(field, field or block_cls.__name__)} is refused: "
                            f"{error['msg'].removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from None


_APP_VARIABLES = {"app_root": "APP_ROOT", "repo_url": "APP_REPO_URL", "services": "APP_SERVICES",
                  "web_root": "WEB_ROOT", "log_dir": "LOG_DIR", "pm2_home": "PM2_HOME", "pm2_command": "PM2_COMMAND",
                  "nginx_reload_command": "NGINX_RELOAD_COMMAND"}


_RDS_VARIABLES = {"instance_id": "RDS_INSTANCE_ID", "dr_region": "RDS_DR_REGION", "kms_key_id": "RDS_KMS_KEY_ID",
                  "aws": "AWS_REGION/AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/RDS_ENDPOINT_URL"}


# Tuned by operators in the UI, not set from variables: `blocks init` creates them once, never resets them.
_KEEP_IF_PRESENT = {"thresholds", "queries"}


def save_environment(env: Environment, environment: str) -> list[str]:
    """Save every block of `env` under `environment`; return the saved block names."""
    saved = []
    for item in fields(Environment):
        block = getattr(env, item.name)
        if block is None:
            continue
        name = block_name(environment, item.name)
        if item.name in _KEEP_IF_PRESENT:
            try:
                type(block).load(name)
                continue
            except ValueError:
                pass
        block.save(name, overwrite=True)
        saved.append(f"{block.get_block_type_slug()}/{name}")
    return saved


def _block_class(part: str):
    return {"database": PostgresDatabase, "encryption": BackupEncryption, "repository": BackupRepository,
            "slack": SlackNotices, "archive": ArchiveSources, "drill_database": PostgresDatabase,
            "app": AppHost, "thresholds": CheckThresholds, "queries": BusinessQueries, "redis": RedisCache,
            "rds": RdsInstance, "fleet": AppFleet, "load_balancer": LoadBalancer}[part]


def environment_from_variables(variables: Mapping[str, str]) -> Environment:
    """Given environment variables (DESIGN.md's names), return the blocks they describe.

    Raise ValueError naming the variable when a required one is missing or malformed.
    """
    def need(name: str, why: str = "") -> str:
        value = (variables.get(name) or "").strip()
        if not value:
            raise ValueError(f"environment variable {name} is required{why}")
        return value

    def optional(name: str, default: str | None = None) -> str | None:
        value = (variables.get(name) or "").strip()
        return value or default

    database = PostgresDatabase.from_url(need("DATABASE_URL"))
    encryption = BackupEncryption(
        passphrase=SecretStr(optional("BACKUP_ENCRYPTION_KEY")) if optional("BACKUP_ENCRYPTION_KEY") else None,
        recipients=[r.strip() for r in (optional("BACKUP_GPG_RECIPIENTS") or "").split(",") if r.strip()],
        public_keys=_text_or_file(optional("BACKUP_GPG_PUBLIC_KEYS")),
        private_key=SecretStr(_text_or_file(optional("BACKUP_GPG_PRIVATE_KEY"))) if optional("BACKUP_GPG_PRIVATE_KEY") else None,
    ) if (optional("BACKUP_ENCRYPTION_KEY") or optional("BACKUP_GPG_RECIPIENTS")) else _missing_key()

    bucket_default = f"s3://{optional('S3_BUCKET')}/backups" if optional("S3_BUCKET") else None
    location = optional("BACKUP_REPOSITORY", bucket_default)
    if not location:
        raise ValueError("environment variable BACKUP_REPOSITORY is required (s3://bucket/prefix or a local folder)")
    s3_bucket = None
    if location.startswith("s3://"):
        bucket_name = location[5:].partition("/")[0]
        if not bucket_name:
            raise ValueError(f"BACKUP_REPOSITORY {location!r} names no bucket")
        credentials = AwsCredentials(
            aws_access_key_id=optional("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=SecretStr(optional("AWS_SECRET_ACCESS_KEY")) if optional("AWS_SECRET_ACCESS_KEY") else None,
            region_name=optional("AWS_REGION", "ap-south-1"),
            aws_client_parameters=AwsClientParameters(endpoint_url=optional("S3_ENDPOINT_URL")),
        )
        s3_bucket = S3Bucket(bucket_name=bucket_name, credentials=credentials)
    repository = BackupRepository(url=location, s3_bucket=s3_bucket,
                                  keep_full_days=int(optional("BACKUP_KEEP_FULL_DAYS")
                                                     or default_of(BackupRepository, "keep_full_days")))

    slack_variables = {"webhook_url": "SLACK_WEBHOOK_URL", "ping_url": "HEALTHCHECK_PING_URL",
                       "wal_archive_ping_url": "WAL_ARCHIVE_PING_URL", "watch_ping_url": "WATCH_PING_URL"}
    slack = _build(SlackNotices, slack_variables,
                   **{field: SecretStr(optional(name)) if optional(name) else None
                      for field, name in slack_variables.items()})

    app_root = optional("APP_ROOT", DEFAULT_APP_ROOT)
    config_default = ":".join([
        "/etc/nginx/sites-available/ubertruck", f"{app_root}/shared/.env.production",
        f"{app_root}/.env.production", f"{app_root}/ecosystem.config.js"])
    archive = ArchiveSources(app_root=app_root,
                             config_files=[p for p in optional("BACKUP_CONFIG_FILES", config_default).split(":") if p])

    services = optional("APP_SERVICES")
    app = _build(AppHost, _APP_VARIABLES, app_root=app_root, repo_url=optional("APP_REPO_URL"),
                  services=parse_services(services) if services else default_of(AppHost, "services"),
                  web_root=optional("WEB_ROOT", default_of(AppHost, "web_root")),
                  log_dir=optional("LOG_DIR", default_of(AppHost, "log_dir")),
                  pm2_home=optional("PM2_HOME"), pm2_command=optional("PM2_COMMAND", default_of(AppHost, "pm2_command")),
                  nginx_reload_command=optional("NGINX_RELOAD_COMMAND"))

    redis_url = optional("REDIS_URL")
    redis = RedisCache(url=redis_url, password=SecretStr(optional("REDIS_PASSWORD")) if optional("REDIS_PASSWORD")
                       else None) if redis_url else None

    rds = None
    if optional("RDS_INSTANCE_ID"):
        rds = _build(RdsInstance, _RDS_VARIABLES, instance_id=optional("RDS_INSTANCE_ID"),
                     dr_region=optional("RDS_DR_REGION"), kms_key_id=optional("RDS_KMS_KEY_ID"),
                     aws=AwsCredentials(
                         aws_access_key_id=optional("AWS_ACCESS_KEY_ID"),
                         aws_secret_access_key=SecretStr(optional("AWS_SECRET_ACCESS_KEY"))
                         if optional("AWS_SECRET_ACCESS_KEY") else None,
                         region_name=optional("AWS_REGION", "ap-south-1"),
                         aws_client_parameters=AwsClientParameters(endpoint_url=optional("RDS_ENDPOINT_URL"))))

    drill = optional("DRILL_DATABASE_URL")
    return Environment(database=database, encryption=encryption, repository=repository, slack=slack,
                       archive=archive, drill_database=PostgresDatabase.from_url(drill, "DRILL_DATABASE_URL") if drill else None, app=app,
                       thresholds=CheckThresholds(), queries=BusinessQueries(), redis=redis, rds=rds,
                       fleet=_fleet(optional("APP_HOSTS"), optional("APP_HOSTS_AT_ONCE")),
                       load_balancer=load_balancer_from_variables(variables))


def _fleet(hosts: str | None, at_once: str | None) -> AppFleet | None:
    """Several app hosts (APP_HOSTS=web-1,web-2,...) make deploys and rollbacks roll over them."""
    if not hosts:
        return None
    names = [h.strip() for h in hosts.split(",") if h.strip()]
    fields = {"hosts": names} | ({"hosts_at_once": at_once} if at_once else {})
    return _build(AppFleet, {"hosts": "APP_HOSTS", "hosts_at_once": "APP_HOSTS_AT_ONCE"}, **fields)


def load_host_app(environment: str, host: str) -> AppHost:
    """Return the app block of one host of a fleet: `<env>-app-<host>` when saved, else the
    environment's `<env>-app`. Raise ValueError naming both when neither exists."""
    for name in (block_name(environment, f"app-{host}"), block_name(environment, "app")):
        try:
            return AppHost.load(name)
        except ValueError as exc:
            if "Unable to find block" not in str(exc):
                raise
    raise ValueError(f"no app block for host {host}: save {block_name(environment, f'app-{host}')} or "
                     f"{block_name(environment, 'app')} (ubertruck-ops blocks init --name {environment})")


def _missing_key():
    raise ValueError("environment variable BACKUP_ENCRYPTION_KEY (a passphrase) or BACKUP_GPG_RECIPIENTS "
                     "(with BACKUP_GPG_PUBLIC_KEYS) is required")


def _text_or_file(value: str | None) -> str | None:
    """Armoured key material may be given inline or as a path to a file holding it."""
    if value and not value.startswith("-----") and os.path.isfile(value):
        return Path(value).read_text()
    return value
