"""The one place that maps an environment name to its blocks (blocks/variables.py maps variables to blocks).

Blocks of environment NAME are saved as NAME-database, NAME-encryption, ... so that
flows take only `environment: str` and load their secrets themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pydantic import ValidationError

from ubertruck_ops.blocks.alerting import AlertChannels
from ubertruck_ops.blocks.app import AppHost, default_of
from ubertruck_ops.blocks.app_config import AppConfiguration
from ubertruck_ops.blocks.archive import ArchiveSources
from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.encryption import BackupEncryption
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.blocks.load_balancer import LoadBalancer
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
    thresholds: CheckThresholds | None = None      # load_environment fills in the defaults
    queries: BusinessQueries | None = None         # likewise
    redis: RedisCache | None = None
    rds: RdsInstance | None = None
    fleet: AppFleet | None = None
    load_balancer: LoadBalancer | None = None
    alerts: AlertChannels | None = None          # load_environment fills in "no channel but Slack"
    app_config: AppConfiguration | None = None   # the services' variables (APP_ENV_FILE)


_OPTIONAL = {"drill_database", "app", "thresholds", "queries", "redis", "rds", "fleet", "load_balancer", "alerts",
             "app_config"}


def block_name(environment: str, part: str) -> str:
    """Return the block document name of one part of an environment, e.g. production-database."""
    if not environment or not all(c.islower() or c.isdigit() or c == "-" for c in environment):
        raise ValueError(f"environment name {environment!r} must be lowercase letters, digits and dashes")
    return f"{environment}-{part.replace('_', '-')}"


def load_environment(environment: str) -> Environment:
    """Given an environment name, return its blocks, default thresholds and business queries where none
    are saved. Raise ValueError naming the missing block."""
    from prefect.client.orchestration import get_client

    loaded = {}
    # One client for every block: each client builds an SSL context from the CA bundle (~15 ms of
    # CPU), and Block.load makes a client per call. The two steps are Block.load's own.
    with get_client(sync_client=True) as client:
        for item in fields(Environment):
            loaded[item.name] = _load_one(environment, item.name, client)
    # Tuned in the UI and optional: an environment without them is judged by the defaults.
    loaded["thresholds"] = loaded["thresholds"] or CheckThresholds()
    loaded["queries"] = loaded["queries"] or BusinessQueries()
    loaded["alerts"] = loaded["alerts"] or AlertChannels()
    return Environment(**loaded)


def _load_one(environment: str, part: str, client):
    """Load block `part` of `environment` through `client`; None for a missing optional one. Raise
    ValueError naming a missing required or a malformed block."""
    block_cls = _block_class(part)
    name = block_name(environment, part)
    try:
        document, _ = block_cls._get_block_document(name, client=client)
        return block_cls._load_from_block_document(document, validate=True)
    except Exception as exc:  # noqa: BLE001 - sorted into missing and malformed below
        invalid = _validation_error(exc)
        if invalid is None and not (isinstance(exc, ValueError) and "Unable to find block" in str(exc)):
            raise
        if invalid is not None:
            raise ValueError(f"block {block_cls.get_block_type_slug()}/{name} is malformed ({_reasons(invalid)}): "
                             f"fix it in the UI or run `ubertruck-ops blocks init --name {environment}` "
                             "again") from None
        if part in _OPTIONAL:
            return None
        raise ValueError(f"block {block_cls.get_block_type_slug()}/{name} not found: "
                         f"run `ubertruck-ops blocks init --name {environment}` first") from None


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


# Tuned by operators in the UI: `blocks init` creates the queries once and never resets them, and
# updates only the thresholds its variables set (the others keep what the UI made of them).
_KEEP_IF_PRESENT = {"queries"}
_MERGE_SET_FIELDS = {"thresholds"}


def save_environment(env: Environment, environment: str) -> list[str]:
    """Save every block of `env` under `environment`; return the saved block names."""
    saved = []
    for item in fields(Environment):
        block = getattr(env, item.name)
        if block is None:
            continue
        name = block_name(environment, item.name)
        if item.name in _KEEP_IF_PRESENT | _MERGE_SET_FIELDS:
            try:
                saved_block = type(block).load(name)
            except ValueError:
                saved_block = None
            if saved_block is not None and item.name in _KEEP_IF_PRESENT:
                continue
            if saved_block is not None:
                if not block.model_fields_set:
                    continue
                block = saved_block.model_copy(update={f: getattr(block, f) for f in block.model_fields_set})
        block.save(name, overwrite=True)
        saved.append(f"{block.get_block_type_slug()}/{name}")
    return saved


def _block_class(part: str):
    return {"database": PostgresDatabase, "encryption": BackupEncryption, "repository": BackupRepository,
            "slack": SlackNotices, "archive": ArchiveSources, "drill_database": PostgresDatabase,
            "app": AppHost, "thresholds": CheckThresholds, "queries": BusinessQueries, "redis": RedisCache,
            "rds": RdsInstance, "fleet": AppFleet, "load_balancer": LoadBalancer,
            "alerts": AlertChannels, "app_config": AppConfiguration}[part]


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
