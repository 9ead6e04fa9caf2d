"""The guide's scheduled maintenance (section 10.2): weekly and monthly.

weekly-maintenance: VACUUM ANALYZE where dead tuples pass the threshold, Redis clean-up of the
configured patterns, log rotation verified, security and dependency updates reviewed.
monthly-maintenance: TLS certificates, the restore drill (the guide's "full system backup
test" and DR drill), a performance review of the month, and capacity planning.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from prefect import flow

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.maintenance import (
    cache_cleanup_result,
    capacity_planning,
    drill_checks,
    performance_review,
    tables_to_vacuum,
    vacuum_result,
)
from ubertruck_ops.core.text import one_line
from ubertruck_ops.operations.checklist import publish, thresholds
from ubertruck_ops.operations.frame import operation
from ubertruck_ops.operations.subflows import subflow
from ubertruck_ops.tasks.checks import cache, database, host, tls
from ubertruck_ops.tasks.checks.reports import read_history


@flow(name="weekly-maintenance", description="Sunday: VACUUM ANALYZE where needed, Redis clean-up, log rotation, "
                                             "updates review.")
def weekly_maintenance(environment: str = "production") -> dict:
    """Run the weekly maintenance of `environment`, each step reported as a check (a step that cannot
    run is an error, and the rest go on); fail when any step finds something critical.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
    """
    with operation("weekly maintenance", environment, ping=True) as op:
        env, limits = op.env, thresholds(op.env)
        results: list[CheckResult] = []

        def step(name: str, action) -> None:
            op.step(name)
            try:
                outcome = action()
            except Exception as exc:  # noqa: BLE001 - a step that could not run is reported, the rest go on
                outcome = checks.error(name, one_line(exc))
            results.extend(outcome if isinstance(outcome, list) else [outcome])

        def vacuum() -> CheckResult:
            tables = tables_to_vacuum(database.dead_tuples(env.database), limits.vacuum_dead_tuples,
                                      limits.vacuum_dead_ratio_pct)
            database.vacuum_analyze(env.database, tables)
            return vacuum_result(tables, limits.vacuum_dead_tuples, limits.vacuum_dead_ratio_pct)

        def redis_cleanup() -> CheckResult:
            if env.redis is None:
                return checks.error("cache clean-up", "no Redis block: set REDIS_URL and run blocks init")
            return cache_cleanup_result(cache.clean_up(env.redis, limits.cache_cleanup_patterns))

        step("vacuum analyze", vacuum)
        step("cache clean-up", redis_cleanup)
        if env.app is not None:
            step("log rotation", lambda: host.log_rotation(env.app.logs, limits))
        else:
            results.append(checks.error("log rotation", f"no app host block ({environment}-app)"))
        step("pending updates", host.pending_updates)
        return publish(op, "weekly-maintenance", "Weekly maintenance", results)


@flow(name="monthly-maintenance", description="1st of the month: TLS certificates, restore drill, performance "
                                              "review, capacity planning.")
def monthly_maintenance(environment: str = "production",
                        drill_mode: Literal["logical", "physical", "both", "rds", "applicable"] = "applicable") -> dict:
    """Run the monthly maintenance of `environment`; fail when any item is critical (a failed drill is).

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        drill_mode: The restore drill's mode: applicable (every drill the six-hourly tier has: the guide's
            monthly DR drill), or one of logical, physical, rds, both.
    """
    with operation("monthly maintenance", environment, ping=True) as op:
        limits = thresholds(op.env)
        op.step("check TLS certificates")
        results: list[CheckResult] = [tls.certificate_expiry(target, limits.tls_expiry_days,
                                                             limits.check_timeout_seconds)
                                      for target in limits.tls_hosts]
        op.step("drill a restore")
        drill = subflow("restore-drill")(environment=environment, mode=drill_mode, return_state=True)
        results += drill_checks(drill.result() if drill.is_completed() else None, drill.message or "")
        op.step("review the month")
        history = read_history(op.repo, environment)
        today = dt.datetime.now(dt.UTC).date()
        results.append(performance_review(history, today, limits.response_time_medium_s))
        results.append(capacity_planning(history))
        return publish(op, "monthly-maintenance", "Monthly maintenance", results)
