"""Checks: what one measurement found, and the guide's alert rules (section 7.3) as pure
severity functions. A check that could not measure is `error`, never `ok`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ubertruck_ops.core.pm2 import Pm2App
from ubertruck_ops.core.releases import Probe

OK, WARN, CRITICAL, ERROR = "ok", "warn", "critical", "error"
_ORDER = {CRITICAL: 0, ERROR: 1, WARN: 2, OK: 3}


@dataclass
class CheckResult:
    """One check's outcome: status, the value measured, the threshold it was held to, a one-line detail.

    `severity` is the guide's priority of a warning (high, medium, low); critical is critical.
    """

    name: str
    status: str
    value: object = None
    threshold: object = None
    detail: str = ""
    severity: str = ""
    seconds: float = 0.0

    def to_row(self) -> dict:
        row = asdict(self)
        row["value"] = _short(self.value)
        row["threshold"] = _short(self.threshold)
        row["seconds"] = round(self.seconds, 2)
        return row


def _short(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)[:80]


def ok(name: str, value=None, threshold=None, detail: str = "") -> CheckResult:
    return CheckResult(name, OK, value, threshold, detail)


def critical(name: str, value=None, threshold=None, detail: str = "") -> CheckResult:
    """A critical finding: critical status, critical priority."""
    return CheckResult(name, CRITICAL, value, threshold, detail, "critical")


def warn(name: str, value=None, threshold=None, detail: str = "", severity: str = "medium") -> CheckResult:
    """A warning of the guide's priority `severity` (high, medium or low)."""
    return CheckResult(name, WARN, value, threshold, detail, severity)


def error(name: str, detail: str) -> CheckResult:
    """The check could not measure: never reported as ok."""
    return CheckResult(name, ERROR, None, None, detail[:300])


def above(name: str, value: float, levels: list[tuple[float, str, str]], unit: str = "", detail: str = "") -> CheckResult:
    """Given a value and (threshold, status, severity) levels checked in order (worst first),
    return the result of the first level the value is strictly above, else ok."""
    for threshold, status, severity in levels:
        if value > threshold:
            return CheckResult(name, status, value, f"> {threshold}{unit}", detail or f"{value:.1f}{unit} is above "
                               f"{threshold}{unit}", severity)
    loosest = levels[-1][0] if levels else None
    return CheckResult(name, OK, value, f"<= {loosest}{unit}" if loosest is not None else None,
                       detail or f"{value:.1f}{unit}")


def below(name: str, value: float, levels: list[tuple[float, str, str]], unit: str = "", detail: str = "") -> CheckResult:
    """As `above`, for measurements that are bad when low (free disk, cache hit rate)."""
    for threshold, status, severity in levels:
        if value < threshold:
            return CheckResult(name, status, value, f"< {threshold}{unit}", detail or f"{value:.1f}{unit} is below "
                               f"{threshold}{unit}", severity)
    loosest = levels[-1][0] if levels else None
    return CheckResult(name, OK, value, f">= {loosest}{unit}" if loosest is not None else None,
                       detail or f"{value:.1f}{unit}")


def disk(name: str, used_pct: float, critical_free_pct: float, low_used_pct: float) -> CheckResult:
    """Disk: critical when free space is under `critical_free_pct`; low priority over `low_used_pct` used."""
    free = 100.0 - used_pct
    if free < critical_free_pct:
        return critical(name, round(used_pct, 1), f"free >= {critical_free_pct}%", f"only {free:.1f}% free")
    if used_pct > low_used_pct:
        return warn(name, round(used_pct, 1), f"used <= {low_used_pct}%", f"{used_pct:.1f}% used", "low")
    return ok(name, round(used_pct, 1), f"used <= {low_used_pct}%", f"{used_pct:.1f}% used, {free:.1f}% free")


def expiry(name: str, days_left: float, warn_days: int, expires: str) -> CheckResult:
    """A certificate: critical once expired, low priority within `warn_days` of expiring."""
    if days_left < 0:
        return critical(name, f"{days_left:.0f} days", f">= {warn_days} days", f"expired {expires}")
    if days_left < warn_days:
        return warn(name, f"{days_left:.0f} days", f">= {warn_days} days",
                    f"expires {expires} (in {days_left:.0f} days): renew it", "low")
    return ok(name, f"{days_left:.0f} days", f">= {warn_days} days", f"expires {expires}")


def is_2xx(status: int | None) -> bool:
    """An HTTP answer counts as success only with a 2xx status (None: no answer)."""
    return status is not None and 200 <= status < 300


def service_health(service: str, port: int, probe: Probe) -> CheckResult:
    """Given what a service answered on /health, /health/ready and /health/live, return the check:
    critical when it does not answer or any of the three is not 2xx."""
    name = f"health {service}"
    if probe.health is None:
        return critical(name, "down", "2xx", f"no answer on port {port}: {probe.error}")
    bad = [f"{path} {code}" for path, code in (("/health", probe.health), ("/health/ready", probe.ready),
                                                ("/health/live", probe.live)) if not is_2xx(code)]
    if bad:
        return critical(name, ", ".join(bad), "2xx", f"{service} answers {', '.join(bad)}")
    return ok(name, probe.version, "2xx", f"{service} {probe.version}: healthy, ready, live")


def endpoint(url: str, status: int | None, failure: str = "", milliseconds: float = 0.0) -> CheckResult:
    """Given an extra URL's answer (status, or the failure when none came), return the check:
    critical unless it answered 2xx."""
    name = f"endpoint {url}"
    if status is None:
        return critical(name, "down", "2xx", failure[:200])
    if not is_2xx(status):
        return critical(name, status, "2xx", f"answered {status}")
    return ok(name, status, "2xx", f"{milliseconds:.0f} ms")


def pm2_services(services: list[str], apps: list[Pm2App], restarts_before: dict[str, int],
                 restarts_medium: int) -> list[CheckResult]:
    """Given the services and PM2's apps, return one check per service: critical when one of its
    apps is not online (or none runs), medium when it restarted more than `restarts_medium` times
    since `restarts_before`."""
    results = []
    for service in services:
        mine = [a for a in apps if a.service == service]
        name = f"pm2 {service}"
        if not mine or any(a.status != "online" for a in mine):
            state = ", ".join(f"{a.name} {a.status}" for a in mine) or "not running"
            results.append(critical(name, state, "online", f"{service}: {state}"))
            continue
        new = sum(a.restarts - restarts_before.get(a.name, 0) for a in mine if a.restarts > restarts_before.get(a.name, 0))
        results.append(above(name, new, [(restarts_medium, WARN, "medium")], " restarts",
                             f"{', '.join(a.name for a in mine)} online, {new} restart(s) since the last check"))
    return results


def timed_out(name: str, limit: float) -> CheckResult:
    """A check still running at its deadline: critical (a hung socket must not look fine)."""
    return CheckResult(name, CRITICAL, None, f"answer within {limit:.0f} s", f"no answer within {limit:.0f} s",
                       "critical", limit)


def worst(results: list[CheckResult]) -> str:
    """Return the worst status among results (ok for none)."""
    return min((r.status for r in results), key=_ORDER.__getitem__, default=OK)


def ordered(results: list[CheckResult]) -> list[CheckResult]:
    """Critical first, then error, warn, ok; by name within each."""
    return sorted(results, key=lambda r: (_ORDER[r.status], r.name))


def counts(results: list[CheckResult]) -> dict[str, int]:
    return {status: sum(r.status == status for r in results) for status in (CRITICAL, ERROR, WARN, OK)}


def change(today: float | None, yesterday: float | None) -> str:
    """Return a day-over-day change such as '+12.5%', 'new' or 'n/a'."""
    if today is None or yesterday is None:
        return "n/a"
    if yesterday == 0:
        return "new" if today else "0%"
    return f"{(today - yesterday) / yesterday * 100:+.1f}%"


def days_until_full(used_now: float, used_days_ago: float, days: float, capacity: float, limit_pct: float = 90) -> float | None:
    """Given used bytes now and `days` ago and the capacity, return the days until usage reaches
    `limit_pct` of capacity at the same growth, or None when usage is not growing."""
    if days <= 0:
        return None
    growth = (used_now - used_days_ago) / days
    remaining = capacity * limit_pct / 100 - used_now
    if remaining <= 0:
        return 0.0
    if growth <= 0:
        return None
    return remaining / growth
