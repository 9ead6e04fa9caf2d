"""The six-hourly tier of an environment, read from its blocks and its server (the choice is
core/tiers.py's): shared by the six-hourly run, the monthly drill and `blocks init`."""

from __future__ import annotations

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.core.physical import ServerFacts
from ubertruck_ops.core.tiers import Tier, six_hourly_tier
from ubertruck_ops.tasks import physical, postgres


def read_tier(env: Environment) -> tuple[Tier, ServerFacts | None]:
    """Return the environment's six-hourly tier and the server facts it was chosen from (None on RDS,
    where the snapshot API decides and the database is not asked). Raise DatabaseUnreachable when
    the server does not answer."""
    if env.rds is not None:
        return six_hourly_tier(None, env.rds.instance_id), None
    with postgres.connect(env.database) as conn:
        facts = physical.server_facts(conn)
    return six_hourly_tier(facts, None), facts
