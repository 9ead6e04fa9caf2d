"""The guide's daily checklists (section 10.1) at 9:00, 14:00 and 18:00, every item a measured check.

The story of each: load the environment and the thresholds; run every check at once, each with
its own deadline; remember what the next run needs (log offsets, PM2 restart counts, the day's
figures); publish the table, the report and the Slack summary; end Failed when anything is
critical.
"""

from __future__ import annotations

import base64
import datetime as dt
import os

from prefect import flow

from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checklist_rules as rules
from ubertruck_ops.core import checks, reports
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.operations.checklist import business_queries, publish, thresholds
from ubertruck_ops.operations.frame import Operation, operation
from ubertruck_ops.tasks.checks import (
    backups,
    cache,
    database,
    host,
    orchestration,
    replication,
    run_checks,
    services,
    tls,
)

BACKUP_CHECK_SECONDS = 900      # verifying every object's checksum reads the whole backup
ARCHIVE_LIST_SECONDS = 120      # listing three days of WAL in S3 takes seconds, not ten


def business(name: str, env: Environment, queries: dict[str, str], judge) -> CheckResult:
    """Run business query `name` and judge its number; error when the query is not configured."""
    if name not in queries:
        return checks.error(name.replace("_", " "), f"no query '{name}' in the business queries block")
    return judge(database.query_number(env.database, queries[name]))


@flow(name="morning-checklist", description="9:00: service health, overnight alerts, backup, WAL slot and archive, "
                                            "error logs, disk, PM2, response times, scheduled jobs.")
def morning_checklist(environment: str = "production") -> dict:
    """Given `environment`, run the guide's 9:00 checks: what happened overnight (alerts, the backup, new
    error lines, PM2 restarts) and whether everything serves now. Fail when any is critical.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
    """
    with operation("morning checklist", environment, ping=True) as op:
        env, limits = op.env, thresholds(op.env)
        state = orchestration.remembered("checklist_state", environment)
        learned: dict = {}
        plan: dict = {"database reachable": lambda: database.reachable(env.database),
                      "overnight alerts": lambda: orchestration.overnight_alerts(environment,
                                                                                 orchestration.since_hours(15)),
                      "last night's backup": lambda: backups.last_backup(op.repo, limits),
                      "scheduled jobs late": orchestration.late_runs}
        for path in limits.disk_paths:
            plan[f"disk {path}"] = lambda path=path: host.disk(path, limits)
        if env.rds is None:     # our slot on the primary and the WAL archive (RDS has neither)
            plan["wal slot"] = lambda: replication.wal_slot(env.database, limits, environment, op.repo)
            plan["wal archive lag"] = lambda: replication.archive_lag(env.database, op.repo, limits, environment)
        for url in limits.endpoints:
            plan[f"endpoint {url}"] = lambda url=url: services.endpoint(url, limits.check_timeout_seconds)
        if env.app is None:
            plan["services"] = lambda: checks.error("services", f"no app host block ({environment}-app): set APP_ROOT "
                                                                "and run blocks init")
        else:
            app = env.app
            for service in app.services:
                plan[f"health {service}"] = lambda s=service: services.service_health(app, s,
                                                                                      limits.check_timeout_seconds)
            plan["response times"] = lambda: services.response_times(app, limits, timeout=limits.check_timeout_seconds)

            def pm2_status():
                results, learned["pm2_restarts"] = services.pm2_status(app, limits, state.get("pm2_restarts", {}))
                return results

            def error_logs():
                result, learned["log_offsets"] = host.new_error_lines(app.logs, state.get("log_offsets", {}))
                return result

            plan["pm2 status"] = pm2_status
            plan["error logs"] = error_logs
        results = run_checks(plan, limits.check_timeout_seconds, {"last night's backup": BACKUP_CHECK_SECONDS,
                                                                  "wal archive lag": ARCHIVE_LIST_SECONDS})
        # (a missing app block is this checklist's "services" error, above)
        results += rules.not_configured(limits.tls_hosts, limits.access_log, env.redis is not None, limits.queue_keys)
        if learned:
            orchestration.remember("checklist_state", environment, {**state, **learned})
        return publish(op, "morning-checklist", "Morning checklist (9:00)", results)


@flow(name="afternoon-checklist", description="14:00: active users, booking success, settlements, response times, "
                                              "database connections, cache hit rates, queue backlog.")
def afternoon_checklist(environment: str = "production") -> dict:
    """At 14:00, while the business is busy, check `environment`'s business figures and the load they
    put on the database, the caches and the services; fail when any check is critical.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
    """
    with operation("afternoon checklist", environment, ping=True) as op:
        env, limits, queries = op.env, thresholds(op.env), business_queries(op.env)
        plan: dict = {
            "active users": lambda: business("active_users", env, queries, rules.active_users),
            "booking success rate": lambda: business("booking_success_rate", env, queries, lambda rate: (
                rules.booking_success_rate(rate, limits.error_rate_critical_pct, limits.error_rate_high_pct))),
            "pending settlements": lambda: business("pending_settlements", env, queries, rules.pending_settlements),
            "failed background jobs": lambda: business("failed_background_jobs", env, queries, lambda n: (
                rules.failed_background_jobs(n, limits.failed_jobs_medium))),
            "database connections": lambda: database.connections(env.database, limits),
            "postgres cache hit rate": lambda: database.buffer_cache_hit(env.database, limits),
        }
        if env.app is not None:
            plan["response times"] = lambda: services.response_times(env.app, limits,
                                                                     timeout=limits.check_timeout_seconds)
        if env.redis is None:
            plan["redis cache hit rate"] = lambda: checks.error("redis cache hit rate", "no Redis block: set REDIS_URL "
                                                                                        "and run blocks init")
        else:
            plan["redis cache hit rate"] = lambda: cache.cache_hit_rate(env.redis, limits)
            if limits.queue_keys:
                plan["queue backlog"] = lambda: cache.queue_backlog(env.redis, limits)
        results = run_checks(plan, limits.check_timeout_seconds)
        results += rules.not_configured(limits.tls_hosts, limits.access_log, env.redis is not None, limits.queue_keys,
                                        env.app is not None)
        return publish(op, "afternoon-checklist", "Afternoon checklist (14:00)", results)


METRICS = {"bookings": "bookings_day", "revenue (INR)": "revenue_day", "truck utilization %": "truck_utilization_day",
           "new users": "new_users_day"}


@flow(name="evening-checklist", description="18:00: the day's metrics against yesterday (with a chart), security "
                                            "alerts, backup schedules, resources, TLS expiry, pending updates, "
                                            "status report.")
def evening_checklist(environment: str = "production", day: str | None = None) -> dict:
    """Run the guide's evening checks and the daily status report for `day` (default today, UTC).

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
        day: The day to report on (YYYY-MM-DD, UTC); empty: today.
    """
    with operation("evening checklist", environment, ping=True) as op:
        env, limits, queries = op.env, thresholds(op.env), business_queries(op.env)
        today = dt.date.fromisoformat(day) if day else dt.datetime.now(dt.UTC).date()
        yesterday = today - dt.timedelta(days=1)
        figures: dict = {}

        def daily_metrics() -> CheckResult:
            for label, query in METRICS.items():
                if query in queries:
                    figures[label] = (database.query_number(env.database, queries[query], yesterday),
                                      database.query_number(env.database, queries[query], today))
            per_day = backups.backups_per_day(op.repo)
            for label, key, scale in (("backup MiB", "bytes", 1 / 2**20), ("backup seconds", "seconds", 1)):
                figures[label] = tuple(per_day.get(d.isoformat(), {}).get(key, 0) * scale for d in (yesterday, today))
            figures["database MiB"] = (None, database.database_size(env.database) / 2**20)
            return checks.ok("daily metrics", len(figures), None, "; ".join(
                f"{label} {now:,.1f} ({checks.change(now, before)})" for label, (before, now) in figures.items()))

        plan: dict = {
            "daily metrics": daily_metrics,
            "failed logins": lambda: business("failed_logins", env, queries, lambda n: (
                rules.failed_logins(n, limits.failed_logins_high))),
            "backup schedules": lambda: orchestration.backup_schedules(environment),
            "cpu": lambda: host.cpu(limits),
            "memory": lambda: host.memory(limits),
            "pending updates": host.pending_updates,
        }
        for path in limits.disk_paths:
            plan[f"disk {path}"] = lambda path=path: host.disk(path, limits)
        for target in limits.tls_hosts:      # the guide's 7.3 "SSL certificate expiry < 30 days" is daily
            plan[f"tls {target}"] = lambda target=target: tls.certificate_expiry(target, limits.tls_expiry_days,
                                                                                 limits.check_timeout_seconds)
        if limits.auth_log and os.path.exists(limits.auth_log):
            plan["auth log failed logins"] = lambda: host.failed_logins_in_auth_log(limits.auth_log, limits)
        if env.app is not None:
            plan["response times"] = lambda: services.response_times(env.app, limits,
                                                                     timeout=limits.check_timeout_seconds)
        results = run_checks(plan, limits.check_timeout_seconds, {"pending updates": 120, "daily metrics": 300})
        results += rules.not_configured(limits.tls_hosts, limits.access_log, env.redis is not None, limits.queue_keys,
                                        env.app is not None)
        _remember_day(op, today, figures, results, limits)
        body, chart_note = _status_report(op, today, yesterday, figures)
        try:
            incidents = orchestration.incidents_since(environment, dt.datetime.combine(today, dt.time(), dt.UTC))
        except Exception as exc:  # noqa: BLE001 - the digest goes out with what is known
            incidents = [f"today's incidents could not be read: {type(exc).__name__}"]
        return publish(op, "evening-checklist", f"Evening checklist and status report ({today})", results,
                       body=body, extra_slack=[chart_note] if chart_note else None, incidents=incidents)


def _remember_day(op: Operation, today: dt.date, figures: dict, results: list[CheckResult],
                  limits: CheckThresholds) -> None:
    """Keep today's figures in the repository for the monthly review and capacity planning."""
    from ubertruck_ops.tasks.checks.reports import record_day

    kept = {label: now for label, (_, now) in figures.items()}
    timing = next((r for r in results if r.name == "response times" and isinstance(r.value, float)), None)
    if timing:
        kept["response seconds"] = timing.value
    used, total = host.disk_bytes(limits.disk_paths[0] if limits.disk_paths else "/")
    kept.update({"disk used bytes": used, "disk total bytes": total})
    record_day(op.repo, op.environment, today, kept)


def _status_report(op: Operation, today: dt.date, yesterday: dt.date, figures: dict) -> tuple[str, str]:
    """Return the status report's markdown (with the chart inline) and a line saying where the chart is."""
    from ubertruck_ops.tasks.charts import day_over_day_png
    from ubertruck_ops.tasks.checks.reports import store_report_file

    if not figures:
        return reports.NO_FIGURES, ""
    charted = reports.charted_metrics(figures)
    png = day_over_day_png(f"Ubertruck {op.environment}: {today} vs {yesterday}", [c.split(" (")[0] for c in charted],
                           [figures[c][0] for c in charted], [figures[c][1] for c in charted],
                           (str(yesterday), str(today)))
    where = store_report_file(op.repo, op.environment, today, "status.png", png)
    body = reports.status_report(today, yesterday, figures, base64.b64encode(png).decode(), where)
    return body, reports.chart_note(where)
