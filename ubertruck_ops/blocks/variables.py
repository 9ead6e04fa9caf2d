"""The variables `blocks init` reads (every one in docs/configuration.md), mapped to the blocks they describe:
the whole map in one place, so an operator's variable is found here whatever block it fills.

A missing required variable, or a refused value, is an error naming the variable, never the value.
"""

from __future__ import annotations

import os
import shlex
import typing
from collections.abc import Mapping
from pathlib import Path

from prefect.types import SecretDict
from prefect_aws import S3Bucket
from pydantic import SecretStr, ValidationError

from ubertruck_ops.blocks.alerting import PAGERDUTY_EVENTS_URL, AlertChannels
from ubertruck_ops.blocks.app import (
    DEFAULT_SERVICES,
    AppHost,
    default_of,
    parse_services,
)
from ubertruck_ops.blocks.app_config import AppConfiguration
from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.blocks.aws import aws_credentials
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.environment import DEFAULT_APP_ROOT, Environment
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.blocks.load_balancer import DEFAULT_UPSTREAMS_FILE, LoadBalancer
from ubertruck_ops.blocks.monitoring import BusinessQueries, CheckThresholds, RedisCache
from ubertruck_ops.blocks.rds import RdsInstance
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.blocks.slack import SlackNotices

_APP_VARIABLES = {"app_root": "APP_ROOT", "repo_url": "APP_REPO_URL", "services": "APP_SERVICES",
                  "web_root": "WEB_ROOT", "log_dir": "LOG_DIR", "pm2_home": "PM2_HOME", "pm2_command": "PM2_COMMAND",
                  "nginx_reload_command": "NGINX_RELOAD_COMMAND", "audit_level": "NPM_AUDIT_LEVEL",
                  "audit_registry": "NPM_AUDIT_REGISTRY", "smoke_urls": "SMOKE_URLS",
                  "smoke_timeout_seconds": "SMOKE_TIMEOUT", "bake_minutes": "BAKE_MINUTES"}


_RDS_VARIABLES = {"instance_id": "RDS_INSTANCE_ID", "dr_region": "RDS_DR_REGION", "kms_key_id": "RDS_KMS_KEY_ID",
                  "aws": "AWS_REGION/AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/RDS_ENDPOINT_URL"}


def environment_from_variables(variables: Mapping[str, str]) -> Environment:
    """Given environment variables (docs/configuration.md), return the blocks they describe.

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
        s3_bucket = S3Bucket(bucket_name=bucket_name, credentials=aws_credentials(variables, "S3_ENDPOINT_URL"))
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
                  nginx_reload_command=optional("NGINX_RELOAD_COMMAND"),
                  audit_level=optional("NPM_AUDIT_LEVEL", default_of(AppHost, "audit_level")),
                  audit_registry=optional("NPM_AUDIT_REGISTRY"),
                  smoke_urls=[u.strip() for u in (optional("SMOKE_URLS") or "").split(",") if u.strip()],
                  smoke_timeout_seconds=optional("SMOKE_TIMEOUT", default_of(AppHost, "smoke_timeout_seconds")),
                  bake_minutes=optional("BAKE_MINUTES", default_of(AppHost, "bake_minutes")))

    redis_url = optional("REDIS_URL")
    redis = RedisCache(url=redis_url, password=SecretStr(optional("REDIS_PASSWORD")) if optional("REDIS_PASSWORD")
                       else None) if redis_url else None

    rds = None
    if optional("RDS_INSTANCE_ID"):
        rds = _build(RdsInstance, _RDS_VARIABLES, instance_id=optional("RDS_INSTANCE_ID"),
                     dr_region=optional("RDS_DR_REGION"), kms_key_id=optional("RDS_KMS_KEY_ID"),
                     aws=aws_credentials(variables, "RDS_ENDPOINT_URL"))

    drill = optional("DRILL_DATABASE_URL")
    return Environment(database=database, encryption=encryption, repository=repository, slack=slack,
                       archive=archive, drill_database=PostgresDatabase.from_url(drill, "DRILL_DATABASE_URL") if drill else None, app=app,
                       thresholds=thresholds_from_variables(variables), queries=BusinessQueries(), redis=redis,
                       rds=rds,
                       fleet=_fleet(optional("APP_HOSTS"), optional("APP_HOSTS_AT_ONCE"), optional("WORKER_SEEN_SECONDS"),
                                    optional("HOST_RUN_TIMEOUT_SECONDS")),
                       load_balancer=load_balancer_from_variables(variables),
                       alerts=alert_channels_from_variables(variables),
                       app_config=app_config_from_file(optional("APP_ENV_FILE")))


def app_config_from_file(path: str | None) -> AppConfiguration | None:
    """The services' variables from APP_ENV_FILE (the guide's .env.production, dotenv syntax), or None
    when it is not set (a saved configuration block is then left as it is). Raise ValueError naming
    the file, or a variable by name (never its value), when it cannot be used."""
    if not path:
        return None
    from dotenv import dotenv_values

    if not os.path.isfile(path):
        raise ValueError(f"APP_ENV_FILE {path} does not exist (the services' .env.production)")
    try:
        values = {name: value for name, value in dotenv_values(path).items()}
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"APP_ENV_FILE {path} cannot be read: {exc.__class__.__name__}") from None
    unset = sorted(name for name, value in values.items() if value is None)
    if unset:
        raise ValueError(f"APP_ENV_FILE {path}: {', '.join(unset)} has no value (write NAME=value)")
    try:
        return AppConfiguration(values=SecretDict(values))
    except ValidationError as exc:
        raise ValueError(f"APP_ENV_FILE {path}: " + "; ".join(e["msg"].removeprefix("Value error, ")
                                                              for e in exc.errors())) from None


_ALERT_VARIABLES = {"pagerduty_routing_key": "PAGERDUTY_ROUTING_KEY", "pagerduty_events_url": "PAGERDUTY_EVENTS_URL",
                    "smtp_url": "SMTP_URL", "smtp_ca_file": "SMTP_CA_FILE", "email_from": "ALERT_EMAIL_FROM", "email_to": "ALERT_EMAIL_TO"}


def alert_channels_from_variables(variables: Mapping[str, str]) -> AlertChannels:
    """PagerDuty and email from PAGERDUTY_ROUTING_KEY, PAGERDUTY_EVENTS_URL, SMTP_URL, ALERT_EMAIL_FROM and
    ALERT_EMAIL_TO (comma-separated); every one optional. Raise ValueError naming a refused variable, or
    ALERT_EMAIL_FROM/ALERT_EMAIL_TO missing beside SMTP_URL."""
    def optional(name: str) -> str | None:
        return (variables.get(name) or "").strip() or None

    recipients = [a.strip() for a in (optional("ALERT_EMAIL_TO") or "").split(",") if a.strip()]
    if optional("SMTP_URL") and not (optional("ALERT_EMAIL_FROM") and recipients):
        raise ValueError("environment variables ALERT_EMAIL_FROM and ALERT_EMAIL_TO are required with SMTP_URL")
    if any("@" not in address for address in recipients):
        raise ValueError("environment variable ALERT_EMAIL_TO must be comma-separated email addresses")
    secret = {name: SecretStr(optional(variable)) if optional(variable) else None
              for name, variable in _ALERT_VARIABLES.items() if name in ("pagerduty_routing_key", "smtp_url")}
    return _build(AlertChannels, _ALERT_VARIABLES, **secret,
                  pagerduty_events_url=optional("PAGERDUTY_EVENTS_URL") or PAGERDUTY_EVENTS_URL,
                  smtp_ca_file=optional("SMTP_CA_FILE"), email_from=optional("ALERT_EMAIL_FROM"), email_to=recipients)


# CheckThresholds field -> the variable that sets it: three by the names the issue gave, the others
# by their field's name in capitals (the README's table lists every one).
_THRESHOLD_NAMES = {"access_log": "WATCH_ACCESS_LOG", "tls_hosts": "TLS_HOSTS", "queue_keys": "QUEUE_KEYS",
                    "endpoints": "CHECK_ENDPOINTS"}
THRESHOLD_VARIABLES = {field: _THRESHOLD_NAMES.get(field, field.upper()) for field in CheckThresholds.model_fields}


def thresholds_from_variables(variables: Mapping[str, str]) -> CheckThresholds:
    """The thresholds `variables` set (THRESHOLD_VARIABLES; lists comma-separated): only those fields
    are set on the result (`model_fields_set`), so save_environment updates exactly them in a saved
    block and keeps what an operator tuned in the UI. Raise ValueError naming a refused variable."""
    fields: dict = {}
    for field, name in THRESHOLD_VARIABLES.items():
        value = (variables.get(name) or "").strip()
        if not value:
            continue
        if typing.get_origin(CheckThresholds.model_fields[field].annotation) is list:
            fields[field] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            fields[field] = value
    return _build(CheckThresholds, THRESHOLD_VARIABLES, **fields)


def _fleet(hosts: str | None, at_once: str | None, seen: str | None = None, step_timeout: str | None = None
           ) -> AppFleet | None:
    """Several app hosts (APP_HOSTS=web-1,web-2,...) make deploys and rollbacks roll over them."""
    if not hosts:
        return None
    names = [h.strip() for h in hosts.split(",") if h.strip()]
    given = {"hosts_at_once": at_once, "worker_seen_seconds": seen, "host_run_timeout_seconds": step_timeout}
    fields = {"hosts": names} | {k: v for k, v in given.items() if v}
    return _build(AppFleet, {"hosts": "APP_HOSTS", "hosts_at_once": "APP_HOSTS_AT_ONCE",
                             "worker_seen_seconds": "WORKER_SEEN_SECONDS",
                             "host_run_timeout_seconds": "HOST_RUN_TIMEOUT_SECONDS"}, **fields)


def host_variable(name: str, host: str) -> str:
    """The variable that sets `name` for one app host only: APP_ROOT for web-2 is APP_ROOT_WEB_2."""
    return f"{name}_{host.upper().replace('-', '_')}"


def host_services(text: str, host: str) -> dict[str, int]:
    """parse_services for APP_SERVICES_<HOST>: a refusal names that variable."""
    try:
        return parse_services(text)
    except ValueError as exc:
        raise ValueError(str(exc).replace("APP_SERVICES", host_variable("APP_SERVICES", host))) from None


def host_apps_from_variables(variables: Mapping[str, str], app: AppHost, hosts: list[str]) -> dict[str, AppHost]:
    """Given the variables, the environment's app block and the fleet's hosts, return the app block of
    each host that has settings of its own (`<APP variable>_<HOST>`, e.g. APP_ROOT_WEB_2,
    APP_SERVICES_WEB_2, PM2_HOME_WEB_2): the environment's block with those fields replaced. Raise
    ValueError naming a refused variable."""
    apps = {}
    for host in hosts:
        own = {field: (variables.get(host_variable(name, host)) or "").strip()
               for field, name in _APP_VARIABLES.items()}
        own = {field: value for field, value in own.items() if value}
        if not own:
            continue
        if "services" in own:
            own["services"] = host_services(own["services"], host)
        if "smoke_urls" in own:
            own["smoke_urls"] = [u.strip() for u in own["smoke_urls"].split(",") if u.strip()]
        names = {field: host_variable(name, host) for field, name in _APP_VARIABLES.items()}
        apps[host] = _build(AppHost, names, **{**app.model_dump(), **own})
    return apps


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


def _pairs(text: str, variable: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"{variable} item {item!r} must be host=address")
        pairs[name.strip()] = value.strip()
    if not pairs:
        raise ValueError(f"{variable} names no host")
    return pairs


def load_balancer_from_variables(variables: Mapping[str, str]) -> LoadBalancer | None:
    """Given environment variables, return the load balancer they describe, or None without LB_KIND.

    LB_KIND=alb needs LB_TARGET_GROUP_ARN and LB_HOSTS (app-1=i-0abc,app-2=i-0def[:port]); region and
    keys are AWS_REGION/AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ELB_ENDPOINT_URL overrides the
    endpoint. LB_KIND=nginx needs LB_HOSTS (app-1=10.0.1.11,...): one upstream per service of
    LB_NGINX_UPSTREAMS (name:port,...; default APP_SERVICES) holding every host at that port.
    LB_HOSTS's names are APP_HOSTS's when that is set.
    Raise ValueError naming the variable when one is missing or malformed.
    """
    def optional(name: str) -> str | None:
        return (variables.get(name) or "").strip() or None

    def need(name: str) -> str:
        value = optional(name)
        if not value:
            raise ValueError(f"environment variable {name} is required with LB_KIND={kind}")
        return value

    def seconds(name: str, field: str) -> dict:
        value = optional(name)
        if value is None:
            return {}
        try:
            return {field: float(value)}
        except ValueError:
            raise ValueError(f"environment variable {name} must be a number of seconds, not {value!r}") from None

    kind = (optional("LB_KIND") or "").lower()
    if not kind:
        return None
    checks = {"check_urls": [u.strip() for u in (optional("LB_CHECK_URLS") or "").split(",") if u.strip()],
              **seconds("LB_CHECK_TIMEOUT", "check_timeout_seconds")}
    if kind not in ("alb", "nginx"):
        raise ValueError(f"environment variable LB_KIND must be alb or nginx, not {kind!r}")
    hosts = _pairs(need("LB_HOSTS"), "LB_HOSTS")
    fleet = [h.strip() for h in (optional("APP_HOSTS") or "").split(",") if h.strip()]
    if fleet and set(fleet) != set(hosts):
        # A host of the fleet the balancer does not know could not be taken out; one it knows that the
        # fleet does not name would never be deployed while it keeps serving.
        raise ValueError(f"LB_HOSTS must name the hosts of APP_HOSTS, each once: missing "
                         f"{sorted(set(fleet) - set(hosts)) or 'none'}, not in APP_HOSTS "
                         f"{sorted(set(hosts) - set(fleet)) or 'none'}")
    try:
        if kind == "alb":
            return LoadBalancer(kind="alb", target_group_arn=need("LB_TARGET_GROUP_ARN"), hosts=hosts,
                                aws=aws_credentials(variables, "ELB_ENDPOINT_URL"),
                                **seconds("LB_DEREGISTRATION_TIMEOUT", "deregistration_timeout_seconds"),
                                **seconds("LB_HEALTHY_TIMEOUT", "healthy_timeout_seconds"), **checks)
        services = optional("LB_NGINX_UPSTREAMS") or optional("APP_SERVICES")
        ports = parse_services(services) if services else dict(DEFAULT_SERVICES)
        # A host with services of its own (APP_SERVICES_<HOST>) is reached at its own ports.
        own = {host: host_services(optional(host_variable("APP_SERVICES", host)), host)
               for host in hosts if optional(host_variable("APP_SERVICES", host)) and not optional("LB_NGINX_UPSTREAMS")}
        upstreams = {name: {host: f"{address}:{own.get(host, {}).get(name, port)}" for host, address in hosts.items()}
                     for name, port in ports.items()}
        extra: dict = {}
        if optional("LB_NGINX_RELOAD_COMMAND"):
            extra["reload_command"] = shlex.split(optional("LB_NGINX_RELOAD_COMMAND"))
        if "LB_NGINX_TEST_COMMAND" in variables:
            extra["test_command"] = shlex.split(variables["LB_NGINX_TEST_COMMAND"] or "")
        if "LB_NGINX_PID_FILE" in variables:
            extra["pid_file"] = optional("LB_NGINX_PID_FILE")
        return LoadBalancer(kind="nginx", upstreams=upstreams,
                            upstreams_file=optional("LB_NGINX_UPSTREAMS_FILE") or DEFAULT_UPSTREAMS_FILE,
                            **extra, **seconds("LB_DRAIN_SECONDS", "drain_seconds"),
                            **seconds("LB_DRAIN_TIMEOUT", "drain_timeout_seconds"), **checks)
    except ValueError as exc:
        raise ValueError(f"load balancer variables are refused: {exc}") from None


def _missing_key():
    raise ValueError("environment variable BACKUP_ENCRYPTION_KEY (a passphrase) or BACKUP_GPG_RECIPIENTS "
                     "(with BACKUP_GPG_PUBLIC_KEYS) is required")


def _text_or_file(value: str | None) -> str | None:
    """Armoured key material may be given inline or as a path to a file holding it."""
    if value and not value.startswith("-----") and os.path.isfile(value):
        return Path(value).read_text()
    return value
