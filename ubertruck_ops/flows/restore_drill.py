"""restore-drill: the guide's monthly disaster-recovery drill, proven rather than ticked.

The story: find the latest complete backup; verify its checksums and key; restore it
into a scratch target (a throwaway PostgreSQL, or a scratch database on
DRILL_DATABASE_URL's server); compare every table's row count with the manifest;
record RTO (start to verified) and RPO (the backup's age); remove the scratch target
whatever happened; report; fail on any mismatch. A drill killed outright (SIGKILL, OOM) takes its
scratch server with it, and the next drill removes its scratch folder.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from ubertruck_ops.core import notices, reports
from ubertruck_ops.core.maintenance import DrillReport, drill_result, drills_of
from ubertruck_ops.core.manifest import utc_now
from ubertruck_ops.core.text import human_seconds
from ubertruck_ops.operations.frame import Operation, operation
from ubertruck_ops.operations.logical_restore import RestoreMismatch, check_backup, restore_into
from ubertruck_ops.operations.physical_restore import restore_physical
from ubertruck_ops.operations.rds import RdsDrillFailed, rds_drill
from ubertruck_ops.operations.tiers import read_tier
from ubertruck_ops.tasks import catalog, leftovers, wal
from ubertruck_ops.tasks.crypto import gpg_session
from ubertruck_ops.tasks.postgres import DatabaseUnreachable
from ubertruck_ops.tasks.scratch_postgres import scratch_target


class DrillFailed(RuntimeError):
    """The backup did not restore to what its manifest promises."""


@flow(name="restore-drill", description="Restore the latest backup into a scratch target and verify it (monthly DR drill).")
def restore_drill(environment: str = "production", backup_id: str | None = None,
                  mode: Literal["logical", "physical", "both", "rds", "applicable"] = "logical") -> dict:
    """Drill a restore of `environment`'s latest (or the given) backup; return RTO, RPO and the verdict.

    mode physical rebuilds the latest physical chain plus archived WAL in a scratch folder instead;
    rds restores the newest RDS snapshot into a scratch instance; both runs logical and physical;
    applicable runs every drill the environment's six-hourly tier has (the monthly schedule does):
    logical always, then physical or rds. Every drill runs even when one before it failed; the run
    fails when any did. The result has the same keys in every mode: mode, passed, and logical,
    physical and rds, each a drill's report (None when not run).

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        backup_id: The logical backup to drill; empty: the latest complete one.
        mode: logical (the nightly dump), physical (the chain and WAL), rds (a snapshot), both, or applicable.
    """
    # Each drill reports itself, passed or failed (artifact and notice), then raises DrillFailed.
    with operation("restore drill", environment, ping=True) as op:
        op.step("remove earlier drills' leftovers whose run is gone")
        leftovers.sweep_leftovers()
        reports, failures = [], []
        for kind in _drills(op, mode):
            op.restart_clock()
            try:
                reports.append(DRILLS[kind](op, backup_id))
            except DrillFailed as exc:
                failures.append(exc)
        if failures:
            raise DrillFailed("; ".join(str(f) for f in failures)) from failures[0]
        return drill_result(mode, reports)


def _drills(op: Operation, mode: str) -> tuple[str, ...]:
    """The drills a mode runs (core/maintenance.drills_of); applicable: the tier's, or when the server
    cannot be asked, what the repository holds (the drills do not need the server)."""
    if mode != "applicable":
        return drills_of(mode)
    try:
        tier, _ = read_tier(op.env)
    except DatabaseUnreachable as exc:
        drills = drills_of(mode, None, has_chain=catalog.latest_physical(op.repo)[0] is not None)
        op.log.warning("cannot ask the server which drills apply (%s): drilling %s, as the repository holds", exc,
                       " and ".join(drills))
        return drills
    op.log.info("drills that apply to the %s tier: %s", tier.name, ", ".join(tier.drills))
    return drills_of(mode, tier.drills)


def _rds_drill(op: Operation, backup_id: str | None) -> DrillReport:
    try:
        return rds_drill(op)
    except RdsDrillFailed as exc:   # reported by rds_drill itself, like the others
        raise DrillFailed(str(exc)) from exc


def _physical_drill(op: Operation, backup_id: str | None = None) -> DrillReport:
    env, repo, step = op.env, op.repo, op.step
    result, error = None, None
    try:
        step("rebuild the physical chain in a scratch folder")
        with gpg_session(env.encryption, for_restore=True) as gpg:
            result = restore_physical(repo, gpg, None, None, keep_running=False, known_roles=(env.database.user,),
                                      scratch=True)
    except Exception as exc:  # noqa: BLE001 - reported, then raised as the drill's failure
        error = exc
    finally:
        if result:
            leftovers.remove_scratch_folder(result["data_directory"])
    rto = op.elapsed
    archived = wal.archived_files(repo)
    newest = max(archived.values(), default=None)
    rpo = (utc_now() - newest).total_seconds() if newest else 0.0
    passed = error is None
    chain = " -> ".join(result["chain"]) if result else "(not restored)"
    findings = [] if passed else [f"step '{step.current}': {type(error).__name__}: {error}"]
    op.publish("restore-drill-physical-report", "physical restore drill",
               reports.physical_drill_report(passed, chain, result["wal_files"] if result else None, rto, rpo,
                                             findings),
        notices.drill_report(op.environment + " physical", chain.split(" -> ")[-1], passed, rto, rpo, findings))
    if not passed:
        raise DrillFailed(f"physical restore drill failed: {findings[0]}") from error
    return DrillReport("physical", result["chain"][-1], True, round(rto, 2), round(rpo, 1),
                       tables=len(result["row_counts"]), rows=sum(result["row_counts"].values()),
                       chain=result["chain"], wal_files=result["wal_files"])


def _logical_drill(op: Operation, backup_id: str | None) -> DrillReport:
    env, repo, step = op.env, op.repo, op.step
    manifest, counts, problems, error = None, {}, [], None
    try:
        step("find the backup")
        manifest = catalog.find_backup(repo, backup_id)
        with gpg_session(env.encryption, for_restore=True) as gpg:
            roles = check_backup(repo, manifest, gpg, step)
            step("restore into a scratch target")
            with scratch_target(env.drill_database, manifest.backup_id[:15].lower()) as (server, database):
                try:
                    counts = restore_into(server, database, manifest, repo, gpg, roles)
                except RestoreMismatch as exc:
                    problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - reported below, then re-raised as the drill's failure
        error = exc
    rto = op.elapsed
    rpo = (utc_now() - manifest.finished).total_seconds() if manifest else 0.0
    passed = error is None and not problems
    backup = manifest.backup_id if manifest else "(none found)"
    findings = problems + ([f"step '{step.current}': {type(error).__name__}: {error}"] if error else [])
    op.publish("restore-drill-report", f"restore drill of {backup}",
               reports.drill_report(backup, passed, rto, rpo, counts, manifest.row_counts if manifest else {},
                                    findings),
               notices.drill_report(op.environment, backup, passed, rto, rpo, findings))
    op.log.info("drill %s: RTO %s, RPO %s", "passed" if passed else "FAILED", human_seconds(rto), human_seconds(rpo))
    if not passed:
        raise DrillFailed(f"restore drill of {backup} failed: " + "; ".join(findings)) from error
    return DrillReport("logical", backup, True, round(rto, 2), round(rpo, 1), tables=len(counts),
                       rows=sum(counts.values()), chain=[backup])


DRILLS = {"logical": _logical_drill, "physical": _physical_drill, "rds": _rds_drill}
