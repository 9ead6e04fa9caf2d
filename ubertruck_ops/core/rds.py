"""The RDS tier's decisions (no physical access: RDS snapshots and the instance's own PITR window):
names of our snapshots and scratch instances, which snapshots to expire, which leftover scratch
instances to delete, the PITR window's verdicts, what a restored instance must hold, and the
refusal to restore over the source. Pure functions, unit-tested in tests/core/test_rds.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult

# Our snapshots and scratch instances carry this tag (value: what they are) and start with their
# prefix: expiry and clean-up touch only what has both, never a name-alike someone else made.
PROJECT_TAG = "ubertruck-ops"
SNAPSHOT_KIND, SCRATCH_KIND = "snapshot", "drill-scratch"
SNAPSHOT_PREFIX = "ubertruck-snap-"
SCRATCH_PREFIX = "ubertruck-drill-"
MAX_IDENTIFIER = 63
_IDENTIFIER = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|-(?!-))*")


class RestoreOverSource(ValueError):
    """A restore would land on the source instance itself."""


@dataclass
class SnapshotInfo:
    """One RDS DB snapshot as described by the API (only what the decisions need)."""

    snapshot_id: str
    instance_id: str
    created: datetime | None          # None while still being created
    status: str = "available"
    snapshot_type: str = "manual"
    tags: dict[str, str] = field(default_factory=dict)
    arn: str = ""


@dataclass
class InstanceInfo:
    """One RDS DB instance as described by the API."""

    instance_id: str
    status: str
    created: datetime | None
    tags: dict[str, str] = field(default_factory=dict)


def validate_identifier(name: str, what: str = "RDS instance id") -> str:
    """Return `name`. Raise ValueError unless it is a valid RDS identifier: letters, digits and
    hyphens, starting with a letter, at most 63 characters, no double or trailing hyphen."""
    if not isinstance(name, str) or not name or len(name) > MAX_IDENTIFIER or not _IDENTIFIER.fullmatch(name) \
            or name.endswith("-"):
        raise ValueError(f"{what} {name!r} is not a valid RDS identifier: letters, digits and single hyphens, "
                         f"starting with a letter, not ending with a hyphen, at most {MAX_IDENTIFIER} characters")
    return name


def _named(prefix: str, instance_id: str, moment: datetime) -> str:
    stamp = moment.strftime("%Y%m%d-%H%M%S")
    room = MAX_IDENTIFIER - len(prefix) - len(stamp) - 1
    middle = re.sub(r"-{2,}", "-", instance_id.lower()[:room]).strip("-")
    return validate_identifier(f"{prefix}{middle}-{stamp}" if middle else f"{prefix}{stamp}", "name")


def snapshot_name(instance_id: str, moment: datetime) -> str:
    """Given the instance and the moment, return our manual snapshot's id, e.g.
    ubertruck-snap-ubertruck-prod-20260124-063000 (lowercase: RDS stores ids lowercased)."""
    return _named(SNAPSHOT_PREFIX, instance_id, moment)


def scratch_name(instance_id: str, moment: datetime) -> str:
    """Given the source instance and the moment, return the drill's scratch instance id, e.g.
    ubertruck-drill-ubertruck-prod-20260124-063000: recognisable, so a later drill can find it."""
    return _named(SCRATCH_PREFIX, instance_id, moment)


def snapshot_tags(environment: str, schedule: str, instance_id: str) -> dict[str, str]:
    """The tags of one of our snapshots."""
    return {PROJECT_TAG: SNAPSHOT_KIND, "environment": environment, "schedule": schedule, "source": instance_id}


def scratch_tags(environment: str, instance_id: str, snapshot_id: str) -> dict[str, str]:
    """The tags of a drill's scratch instance."""
    return {PROJECT_TAG: SCRATCH_KIND, "environment": environment, "source": instance_id, "restored-from": snapshot_id}


def as_tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """RDS's TagList shape."""
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def is_ours(snapshot: SnapshotInfo, instance_id: str) -> bool:
    """True for a manual snapshot of `instance_id` that we took: our tag and our name prefix both."""
    return (snapshot.snapshot_type == "manual" and snapshot.tags.get(PROJECT_TAG) == SNAPSHOT_KIND
            and snapshot.snapshot_id.lower().startswith(SNAPSHOT_PREFIX)
            and snapshot.instance_id.lower() == instance_id.lower())


def newest_snapshot(snapshots: list[SnapshotInfo], instance_id: str) -> SnapshotInfo | None:
    """Return our newest available snapshot of `instance_id`, or None."""
    mine = [s for s in snapshots if is_ours(s, instance_id) and s.status == "available" and s.created is not None]
    return max(mine, key=lambda s: s.created, default=None)


def snapshots_to_expire(snapshots: list[SnapshotInfo], instance_id: str, now: datetime, keep_days: float) -> list[str]:
    """Given the snapshots listed in one region, return the ids of ours to delete: available,
    older than `keep_days`, never the newest of ours, never one whose age is unknown, never anyone
    else's (automated ones, other instances', untagged name-alikes)."""
    newest = newest_snapshot(snapshots, instance_id)
    limit = now - timedelta(days=keep_days)
    return sorted(s.snapshot_id for s in snapshots
                  if is_ours(s, instance_id) and s.status == "available" and s.created is not None
                  and s.created < limit and (newest is None or s.snapshot_id != newest.snapshot_id))


def leftover_scratch(instances: list[InstanceInfo], source_id: str, now: datetime, older_than_hours: float) -> list[str]:
    """Given the region's instances, return the ids of drill scratch instances left behind (by a
    killed run) older than `older_than_hours`: ours by tag and prefix, never the source, never one
    already being deleted."""
    limit = now - timedelta(hours=older_than_hours)
    return sorted(i.instance_id for i in instances
                  if i.tags.get(PROJECT_TAG) == SCRATCH_KIND and i.instance_id.lower().startswith(SCRATCH_PREFIX)
                  and i.instance_id.lower() != source_id.lower() and i.status != "deleting"
                  and i.created is not None and i.created < limit)


def refuse_restore_over_source(target_id: str, source_id: str) -> str:
    """Return the validated target id. Raise RestoreOverSource when it is the source itself (RDS
    ids are case-insensitive) and ValueError when it is no valid identifier."""
    validate_identifier(target_id, "rds_instance")
    if target_id.lower() == source_id.lower():
        raise RestoreOverSource(f"refusing to restore into {target_id}: it is the source instance; "
                                "name a new instance (an RDS restore always creates one)")
    return target_id


def pitr_checks(retention_days: int | None, latest_restorable: datetime | None, now: datetime, min_retention_days: int,
                warn_minutes: float, critical_minutes: float) -> list[CheckResult]:
    """Given the instance's BackupRetentionPeriod and LatestRestorableTime, return two checks:
    the retention (critical under `min_retention_days`, the guide's transaction-log days; 0 means
    automated backups are off) and the RPO, the age of the latest restorable time (critical past
    `critical_minutes`, high past `warn_minutes`; critical when the instance reports none)."""
    results = []
    name = "rds backup retention"
    if retention_days is None or retention_days < min_retention_days:
        why = ("automated backups are off (retention 0): no point-in-time restore is possible"
               if not retention_days else f"automated backups are kept {retention_days} day(s)")
        results.append(checks.critical(name, retention_days, f">= {min_retention_days} days",
                                       f"{why}; the guide keeps {min_retention_days} days: raise BackupRetentionPeriod"))
    else:
        results.append(checks.ok(name, retention_days, f">= {min_retention_days} days",
                                 f"automated backups kept {retention_days} days"))
    name = "rds point-in-time window"
    if latest_restorable is None:
        results.append(checks.critical(name, "none", f"<= {critical_minutes:g} min",
                                       "the instance reports no latest restorable time"))
    else:
        minutes = max(0.0, (now - latest_restorable).total_seconds() / 60)
        results.append(checks.above(name, round(minutes, 1), [(critical_minutes, checks.CRITICAL, "critical"),
                                                              (warn_minutes, checks.WARN, "high")], " min",
                                    f"latest restorable time {latest_restorable.isoformat(timespec='seconds')} is "
                                    f"{minutes:.1f} min old (RPO)"))
    return results


def restored_shortfalls(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Given the manifest's row counts and the restored instance's, return one line per table of
    the manifest that is missing or holds fewer rows (a snapshot newer than the nightly dump may
    hold more, never fewer, rows of an append-mostly table)."""
    problems = []
    for table in sorted(expected):
        got = actual.get(table)
        if got is None:
            problems.append(f"{table}: in the manifest ({expected[table]} rows), missing from the restored instance")
        elif got < expected[table]:
            problems.append(f"{table}: expected at least {expected[table]} rows, restored {got}")
    return problems


def six_hourly_notice(environment: str, snapshot_id: str, copied: str | None, expired: list[str],
                      results: list[CheckResult], errors: list[str]) -> dict:
    """The Slack notice of a six-hourly RDS run that found something (a warning, a critical verdict
    or a failed step); the snapshot is kept either way."""
    status = checks.worst(results)
    bad = status == checks.CRITICAL or errors
    icon = ":rotating_light:" if bad else ":warning:"
    text = f"{icon} [{environment}] six-hourly RDS snapshot {'FAILED a check' if bad else 'completed with warnings'}"
    lines = [f"snapshot: `{snapshot_id}` (kept)", f"DR copy: {copied or 'none'}", f"expired: {len(expired)}"]
    lines += [f"{r.status}: {r.name}: {r.detail}" for r in checks.ordered(results) if r.status != checks.OK]
    lines += [f"error: {e[:500]}" for e in errors]
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                  "text": "\n".join([f"*{text}*", *lines])}}]}
