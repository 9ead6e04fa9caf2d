"""Putting an environment in place: its blocks and the concurrency limits the flows need."""

from __future__ import annotations

import os
from typing import Mapping

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound

from ubertruck_ops.blocks.environment import environment_from_variables, save_environment
from ubertruck_ops.core.limits import ALL_LOCKS


def ensure_concurrency_limits() -> list[str]:
    """Create the project's global concurrency limits where missing; return their names.

    Flows acquire them with strict=True, which fails loudly if they are missing instead
    of silently running two backups at once.
    """
    with get_client(sync_client=True) as client:
        for name, limit in ALL_LOCKS.items():
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
    return sorted(ALL_LOCKS)


def blocks_init(name: str, env_file: str | None = None, variables: Mapping[str, str] | None = None) -> list[str]:
    """Save environment `name`'s blocks from variables (the process environment, overlaid by
    `env_file` when given) and create the concurrency limits. Return what was saved."""
    values = dict(os.environ if variables is None else variables)
    if env_file:
        from dotenv import dotenv_values

        if not os.path.isfile(env_file):
            raise ValueError(f"env file {env_file} does not exist")
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    saved = save_environment(environment_from_variables(values), name)
    return saved + [f"global-concurrency-limit/{n}" for n in ensure_concurrency_limits()]
