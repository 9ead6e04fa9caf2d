"""How the checklists judge the business figures their queries return (flows/checklists.py runs the
queries): each figure's severity bands, from the environment's thresholds. Pure, unit-tested."""

from __future__ import annotations

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult


def active_users(n: float) -> CheckResult:
    """Customers who booked in the last 24 h: reported, never judged (the guide sets no floor)."""
    return checks.ok("active users", int(n), None, f"{int(n):,} customers booked in the last 24 h")


def booking_success_rate(rate: float, critical_pct: float, high_pct: float) -> CheckResult:
    """Given the percentage of the last 24 h's bookings not cancelled, judge the failed share against the
    error-rate bands: critical over `critical_pct`, high over `high_pct`."""
    return checks.above("booking success rate", 100 - rate, [(critical_pct, checks.CRITICAL, "critical"),
                                                             (high_pct, checks.WARN, "high")], "% failed",
                        f"{rate:.1f}% of the last 24 h's bookings not cancelled")


def pending_settlements(n: float) -> CheckResult:
    """Captured payments still unsettled after 2 days: any one is worth a medium warning."""
    return checks.above("pending settlements", n, [(0, checks.WARN, "medium")], "",
                        f"{int(n)} captured payment(s) unsettled after 2 days")


def failed_background_jobs(n: float, medium: float) -> CheckResult:
    """Background jobs failed in the last 24 h: medium over `medium`."""
    return checks.above("failed background jobs", n, [(medium, checks.WARN, "medium")], "",
                        f"{int(n)} failed in the last 24 h")


def failed_logins(n: float, high: float) -> CheckResult:
    """Failed logins in the audit log over 24 h: high over `high` (a password-guessing attempt)."""
    return checks.above("failed logins", n, [(high, checks.WARN, "high")], "", f"{int(n)} in 24 h (audit log)")


def not_configured(tls_hosts: list[str], access_log: str | None, redis_configured: bool,
                   queue_keys: list[str], app_configured: bool = True) -> list[CheckResult]:
    """The checks that cannot run because nothing tells them what to look at: each a low line
    "not configured: set X" (never a pass), so a checklist shows what it is blind to."""
    missing = []
    if not app_configured:
        missing.append(("app services", "APP_ROOT", "no service health or response time is checked"))
    if not tls_hosts:
        missing.append(("tls certificates", "TLS_HOSTS", "no certificate expiry is checked"))
    if not access_log:
        missing.append(("error rate (access log)", "WATCH_ACCESS_LOG",
                        "no error rate or p95 from nginx's access log"))
    if not redis_configured:
        missing.append(("redis", "REDIS_URL", "Redis and its queue are not checked"))
    elif not queue_keys:
        missing.append(("queue backlog", "QUEUE_KEYS", "no queue backlog is checked"))
    return [checks.warn(name, "not configured", variable, f"not configured: set {variable} ({why})", "low")
            for name, variable, why in missing]
