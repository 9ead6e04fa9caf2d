"""The guide's scheduled maintenance (section 10.2): weekly and monthly.

weekly-maintenance: VACUUM ANALYZE where dead tuples pass the threshold, Redis clean-up of the
configured patterns, log rotation verified, security and dependency updates reviewed.
monthly-maintenance: TLS certificates, the restore drill (the guide's "full system backup
test" and DR drill), a performance review of the month, and capacity planning.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Literal

from prefect import flow

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.text import human_bytes, one_line
from ubertruck_ops.flows.checklist_report import publish
from ubertruck_ops.flows.checklists import settings
from ubertruck_ops.flows.restore_drill import restore_drill
from ubertruck_ops.tasks.checks import cache, database, host, tls
from ubertruck_ops.tasks.checks.reports import read_history
from ubertruck_ops.tasks.repository import open_repository


def tables_to_vacuum(stats: list[dict], min_dead: int, min_ratio_pct: float) -> list[str]:
    """Given per-table live/dead tuple counts, return the tables over either threshold."""
    return [s["table"] for s in stats
            if s["dead"] > min_dead or (s["dead"] and 100.0 * s["dead"] / max(1, s["live"] + s["dead"]) > min_ratio_pct)]


@flow(name="weekly-maintenance", description="Sunday: VACUUM ANALYZE where needed, Redis clean-up, log rotation, "
                                             "updates review.")
def weekly_maintenance(environment: str = "production") -> dict:
    """Run the weekly maintenance of `environment`; fail when any step finds something critical.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
    """
    env, limits, _ = settings(environment)
    results: list[CheckResult] = []

    def step(name: str, action) -> None:
        try:
            outcome = action()
        except Exception as exc:  # noqa: BLE001 - a step that could not run is reported, the rest go on
            outcome = checks.error(name, one_line(exc))
        results.extend(outcome if isinstance(outcome, list) else [outcome])

    def vacuum() -> CheckResult:
        tables = tables_to_vacuum(database.dead_tuples(env.database), limits.vacuum_dead_tuples,
                                  limits.vacuum_dead_ratio_pct)
        database.vacuum_analyze(env.database, tables)
        return checks.ok("vacuum analyze", len(tables), f"> {limits.vacuum_dead_tuples} dead or "
                         f"> {limits.vacuum_dead_ratio_pct}%", "vacuumed: " + (", ".join(tables) or "none needed"))

    def redis_cleanup() -> CheckResult:
        if env.redis is None:
            return checks.error("cache clean-up", "no Redis block: set REDIS_URL and run blocks init")
        removed = cache.clean_up(env.redis, limits.cache_cleanup_patterns)
        return checks.ok("cache clean-up", sum(removed.values()), None,
                         ", ".join(f"{p}: {n} key(s) removed" for p, n in removed.items()) or "no patterns configured")

    step("vacuum analyze", vacuum)
    step("cache clean-up", redis_cleanup)
    if env.app is not None:
        step("log rotation", lambda: host.log_rotation(env.app.logs, limits))
    else:
        results.append(checks.error("log rotation", f"no app host block ({environment}-app)"))
    step("pending updates", host.pending_updates)
    return publish("weekly-maintenance", "Weekly maintenance", environment, results, env.slack)


def performance_review(history: dict[str, dict], month_end: dt.date, medium_s: float) -> CheckResult:
    """The month's response times and database growth from the daily history."""
    month = {d: v for d, v in history.items() if (month_end - dt.date.fromisoformat(d)).days < 31}
    if not month:
        return checks.error("performance review", "no daily figures yet (the evening checklist records them)")
    times = [v["response seconds"] for v in month.values() if "response seconds" in v]
    sizes = [v["database MiB"] for _, v in sorted(month.items()) if "database MiB" in v]
    growth = f"database {sizes[0]:,.0f} -> {sizes[-1]:,.0f} MiB" if len(sizes) > 1 else "database growth: one day only"
    if not times:
        return checks.ok("performance review", None, None, f"{len(month)} day(s); no response times; {growth}")
    worst = max(times)
    return checks.above("performance review", worst, [(medium_s, checks.WARN, "medium")], " s",
                        f"{len(month)} day(s): response median {statistics.median(times) * 1000:.0f} ms, "
                        f"worst {worst * 1000:.0f} ms; {growth}")


def capacity_planning(history: dict[str, dict]) -> CheckResult:
    """Days until the disk reaches 90% at the growth seen over the recorded days."""
    days = sorted(d for d, v in history.items() if "disk used bytes" in v)
    if len(days) < 2:
        return checks.error("capacity planning", "needs the disk figures of at least two days")
    first, last = history[days[0]], history[days[-1]]
    span = (dt.date.fromisoformat(days[-1]) - dt.date.fromisoformat(days[0])).days
    left = checks.days_until_full(last["disk used bytes"], first["disk used bytes"], span, last["disk total bytes"])
    detail = (f"{human_bytes(last['disk used bytes'])} of {human_bytes(last['disk total bytes'])} used, "
              f"growth {human_bytes((last['disk used bytes'] - first['disk used bytes']) / max(span, 1))}/day")
    if left is None:
        return checks.ok("capacity planning", "not growing", "> 90 days", detail + "; not growing")
    return checks.below("capacity planning", left, [(30, checks.WARN, "high"), (90, checks.WARN, "low")], " days",
                        f"{left:.0f} days until 90% full; {detail}")


@flow(name="monthly-maintenance", description="1st of the month: TLS certificates, restore drill, performance "
                                              "review, capacity planning.")
def monthly_maintenance(environment: str = "production",
                        drill_mode: Literal["logical", "physical", "both"] = "both") -> dict:
    """Run the monthly maintenance of `environment`; fail when any item is critical (a failed drill is).

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        drill_mode: The restore drill's mode: both (the guide's monthly DR drill), logical or physical.
    """
    env, limits, _ = settings(environment)
    results: list[CheckResult] = [tls.certificate_expiry(target, limits.tls_expiry_days, limits.check_timeout_seconds)
                                  for target in limits.tls_hosts]
    drill = restore_drill(environment=environment, mode=drill_mode, return_state=True)
    if drill.is_completed():
        report = drill.result()
        results.append(checks.ok("restore drill", report["backup_id"], "row counts match",
                                 f"{report['tables']} tables, {report['rows']:,} rows; RTO {report['rto_seconds']:.1f} s"))
    else:
        results.append(CheckResult("restore drill", checks.CRITICAL, "failed", "row counts match",
                                   (drill.message or "the drill failed")[:300], "critical"))
    history = read_history(open_repository(env.repository), environment)
    today = dt.datetime.now(dt.timezone.utc).date()
    results.append(performance_review(history, today, limits.response_time_medium_s))
    results.append(capacity_planning(history))
    return publish("monthly-maintenance", "Monthly maintenance", environment, results, env.slack)
