"""core/tiers.py: every kind of server gets the six-hourly tier that can run on it, said in one sentence."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.physical import ServerFacts
from ubertruck_ops.core.tiers import BASE_AND_WAL, NATIVE_INCREMENTAL, NO_TIER, RDS_SNAPSHOTS, refusal, six_hourly_tier

SEG = 16 << 20


def facts(version: int = 180001, summarize: bool = True, wal_level: str = "replica", replicate: bool = True,
          managed: str | None = None, switch: bool = True) -> ServerFacts:
    return ServerFacts(version, summarize, wal_level, replicate, managed, "7711", 1, SEG, switch)


@pytest.mark.parametrize("server, rds, tier, drills, says", [
    (facts(), None, NATIVE_INCREMENTAL, ("logical", "physical"), "PostgreSQL 18 with summarize_wal"),
    (facts(170004), None, NATIVE_INCREMENTAL, ("logical", "physical"), "incremental every 6 hours"),
    (facts(150018, summarize=False), None, BASE_AND_WAL, ("logical", "physical"), "PostgreSQL 15 has no incremental"),
    (facts(130020, summarize=False), None, BASE_AND_WAL, ("logical", "physical"), "recovery point proven"),
    (facts(180001, summarize=False), None, BASE_AND_WAL, ("logical", "physical"), "summarize_wal = on for incr"),
    (None, "ubertruck-prod", RDS_SNAPSHOTS, ("logical", "rds"), "RDS instance ubertruck-prod"),
    (facts(150018, managed="Amazon RDS"), "ubertruck-prod", RDS_SNAPSHOTS, ("logical", "rds"), "manual snapshot"),
    (facts(150018, managed="Amazon RDS"), None, NO_TIER, ("logical",), "Set RDS_INSTANCE_ID"),
    (facts(150018, managed="Google Cloud SQL"), None, NO_TIER, ("logical",), "Google Cloud SQL gives no physical"),
    (facts(120017), None, NO_TIER, ("logical",), "older than 13"),
    (facts(150018, wal_level="minimal"), None, NO_TIER, ("logical",), "set wal_level = replica"),
    (facts(150018, replicate=False), None, NO_TIER, ("logical",), "ALTER ROLE <backup role> REPLICATION"),
    (facts(150018, summarize=False, switch=False), None, NO_TIER, ("logical",), "GRANT EXECUTE ON FUNCTION pg_sw"),
    (facts(180001, switch=False), None, NATIVE_INCREMENTAL, ("logical", "physical"), "incremental every 6 hours"),
])
def test_each_kind_of_server_gets_the_tier_that_can_run_on_it(server, rds, tier, drills, says):
    chosen = six_hourly_tier(server, rds)
    assert (chosen.name, chosen.drills) == (tier, drills)
    assert says in chosen.why
    assert chosen.scheduled == (tier != NO_TIER)
    assert (refusal(chosen) is None) == chosen.scheduled
    assert chosen.as_dict()["tier"] == tier


def test_a_tier_without_an_rds_block_needs_the_servers_facts():
    with pytest.raises(ValueError, match="facts are needed"):
        six_hourly_tier(None, None)
