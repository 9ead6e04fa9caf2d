"""Which six-hourly backup tier a database gets, and which restore drills apply to it.

The guide's strategy is "incremental every 6 hours, kept 7 days; transaction logs continuously,
kept 3 days". What realises it depends on the server:

- native incremental: PostgreSQL 17+ with physical access and summarize_wal on - a base backup,
  then pg_basebackup --incremental every 6 hours, plus the continuous WAL archive;
- base and WAL: PostgreSQL 13-16 (or 17+ without summarize_wal) with physical access - a base
  backup now and then plus the continuous WAL archive; every 6 hours the run closes the current
  WAL segment, proves every segment since the base is archived intact, and records that
  recovery point;
- RDS snapshots: Amazon RDS (no physical access) - a manual snapshot every 6 hours plus the
  instance's own automated backups (its point-in-time window);
- none: a managed server offering neither; the six-hourly run is not scheduled, said once.

Pure functions, unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass

from ubertruck_ops.core.physical import ServerFacts

NATIVE_INCREMENTAL = "native-incremental"
BASE_AND_WAL = "base-and-wal"
RDS_SNAPSHOTS = "rds-snapshots"
NO_TIER = "none"

OLDEST_SUPPORTED = 130000      # PostgreSQL 13: the oldest release the project backs up physically


@dataclass(frozen=True)
class Tier:
    name: str                      # one of the names above
    why: str                       # one sentence an operator reads in the run, blocks init and serve
    drills: tuple[str, ...]        # the restore drills that apply: logical always, then physical or rds

    @property
    def scheduled(self) -> bool:
        """The six-hourly deployment is scheduled only when it has something to do."""
        return self.name != NO_TIER

    @property
    def physical(self) -> bool:
        return self.name in (NATIVE_INCREMENTAL, BASE_AND_WAL)

    def as_dict(self) -> dict:
        return {"tier": self.name, "why": self.why, "drills": list(self.drills), "scheduled": self.scheduled}


def six_hourly_tier(facts: ServerFacts | None, rds_instance: str | None) -> Tier:
    """Given the server's facts (None when not read) and the RDS instance id of the environment's
    RDS block (None without one), return the six-hourly tier it gets and why."""
    if rds_instance:
        return Tier(RDS_SNAPSHOTS, f"RDS instance {rds_instance}: a manual snapshot every 6 hours plus the instance's "
                                   "automated backups (its point-in-time window); no physical access on RDS",
                    ("logical", "rds"))
    if facts is None:
        raise ValueError("the server's facts are needed to choose a tier without an RDS block")
    major = facts.version_num // 10000
    if facts.managed_by:
        hint = (" Set RDS_INSTANCE_ID (and run blocks init) for RDS snapshots." if facts.managed_by == "Amazon RDS"
                else "")
        return Tier(NO_TIER, f"{facts.managed_by} gives no physical access (no pg_basebackup, no WAL archive): the "
                             "six-hourly run is not scheduled; the nightly logical backup and the provider's own "
                             f"point-in-time recovery cover it.{hint}", ("logical",))
    if facts.version_num < OLDEST_SUPPORTED:
        return Tier(NO_TIER, f"PostgreSQL {major} is older than 13, the oldest this project backs up physically: the "
                             "six-hourly run is not scheduled; upgrade the server", ("logical",))
    if facts.wal_level not in ("replica", "logical"):
        return Tier(NO_TIER, f"wal_level is {facts.wal_level}, so no WAL can be archived: the six-hourly run is not "
                             "scheduled; set wal_level = replica in postgresql.conf and restart the server",
                    ("logical",))
    if not facts.can_replicate:
        return Tier(NO_TIER, "the backup role lacks the REPLICATION privilege, so no physical backup can run: the "
                             "six-hourly run is not scheduled; ALTER ROLE <backup role> REPLICATION; allow it in "
                             "pg_hba.conf for the 'replication' database, then run blocks init again", ("logical",))
    if major >= 17 and facts.summarize_wal:
        return Tier(NATIVE_INCREMENTAL, f"PostgreSQL {major} with summarize_wal: a base backup, then an incremental "
                                        "every 6 hours, plus the continuous WAL archive", ("logical", "physical"))
    if not facts.can_switch_wal:
        return Tier(NO_TIER, f"PostgreSQL {major} without incrementals relies on the WAL archive, and the backup role "
                             "may not close a WAL segment to prove a recovery point: the six-hourly run is not "
                             "scheduled; GRANT EXECUTE ON FUNCTION pg_switch_wal() TO <backup role>; then run blocks "
                             "init again", ("logical",))
    if major >= 17:
        why = (f"PostgreSQL {major} with summarize_wal off: a base backup plus the continuous WAL archive, a recovery "
               "point proven every 6 hours (ALTER SYSTEM SET summarize_wal = on for incrementals)")
    else:
        why = (f"PostgreSQL {major} has no incremental backup: a base backup plus the continuous WAL archive, a "
               "recovery point proven every 6 hours")
    return Tier(BASE_AND_WAL, why, ("logical", "physical"))


def refusal(tier: Tier) -> str | None:
    """Given a tier, return why the six-hourly run cannot do anything, or None."""
    return None if tier.scheduled else tier.why
