"""The scheduled maintenance's judgements (the guide's section 10.2): which tables to vacuum, the
month's performance review, capacity planning, and what a restore drill found. Pure functions,
unit-tested."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import asdict, dataclass, field

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.core.text import human_bytes


def tables_to_vacuum(stats: list[dict], min_dead: int, min_ratio_pct: float) -> list[str]:
    """Given per-table live/dead tuple counts, return the tables over either threshold."""
    return [s["table"] for s in stats
            if s["dead"] > min_dead or (s["dead"] and 100.0 * s["dead"] / max(1, s["live"] + s["dead"]) > min_ratio_pct)]


def vacuum_result(tables: list[str], min_dead: int, min_ratio_pct: float) -> CheckResult:
    """Given the tables VACUUM ANALYZE was run on and the thresholds that chose them, return the row."""
    return checks.ok("vacuum analyze", len(tables), f"> {min_dead} dead or > {min_ratio_pct}%",
                     "vacuumed: " + (", ".join(tables) or "none needed"))


def cache_cleanup_result(removed: dict[str, int]) -> CheckResult:
    """Given the keys removed per configured pattern, return the cache clean-up's row."""
    return checks.ok("cache clean-up", sum(removed.values()), None,
                     ", ".join(f"{p}: {n} key(s) removed" for p, n in removed.items()) or "no patterns configured")


def performance_review(history: dict[str, dict], month_end: dt.date, medium_s: float) -> CheckResult:
    """Given the daily history by ISO day, return the check of the month's response times (medium
    priority over `medium_s` at worst) and database growth; error without any day in the month."""
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
    """Given the daily history by ISO day, return the days until the disk reaches 90% at the growth
    seen over the recorded days (high priority under 30, low under 90); error with fewer than two days."""
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


@dataclass
class DrillReport:
    """What one restore drill found; the logical and the physical drill report the same fields."""

    kind: str                     # logical (the nightly dump) | physical (the chain and WAL) | rds (a snapshot)
    backup_id: str                # the backup restored; physical: the chain's newest
    passed: bool
    rto_seconds: float            # start to verified
    rpo_seconds: float            # age of the backup (physical: of the newest archived WAL)
    tables: int
    rows: int
    chain: list[str] = field(default_factory=list)   # every backup restored, oldest first
    wal_files: int = 0            # archived WAL files replayed (logical: none)


DRILL_KINDS = ("logical", "physical", "rds")
_MODES = {"logical": ("logical",), "physical": ("physical",), "both": ("logical", "physical"), "rds": ("rds",)}


def drills_of(mode: str, tier_drills: tuple[str, ...] | None = None, has_chain: bool = False) -> tuple[str, ...]:
    """Given a restore-drill mode, return the drills it runs, in order. `applicable` runs the six-hourly
    tier's drills (`tier_drills`); when the server could not be asked for its tier (None), what the
    repository holds decides: logical always, physical too when it `has_chain` (the drills themselves
    need no server)."""
    if mode != "applicable":
        return _MODES[mode]
    if tier_drills is not None:
        return tier_drills
    return ("logical", "physical") if has_chain else ("logical",)


def drill_result(mode: str, reports: list[DrillReport]) -> dict:
    """Given a restore-drill run's mode and its drills' reports, return its result: the same keys
    in every mode, `logical` and `physical` each a report or None when that drill was not run."""
    by_kind = {report.kind: asdict(report) for report in reports}
    return {"mode": mode, "passed": all(report.passed for report in reports),
            **{kind: by_kind.get(kind) for kind in DRILL_KINDS}}


def drill_checks(result: dict | None, failure: str = "") -> list[CheckResult]:
    """Given a restore-drill result (None when the run failed, `failure` saying why), return the
    monthly maintenance's rows: one per drill run, critical when the run failed."""
    if result is None:
        return [checks.critical("restore drill", "failed", "row counts match", (failure or "the drill failed")[:300])]
    rows = []
    if result["logical"]:
        drill = result["logical"]
        rows.append(checks.ok("restore drill", drill["backup_id"], "row counts match",
                              f"{drill['tables']} tables, {drill['rows']:,} rows; RTO {drill['rto_seconds']:.1f} s"))
    if result["physical"]:
        drill = result["physical"]
        rows.append(checks.ok("physical restore drill", drill["backup_id"], "restored and promoted",
                              f"chain of {len(drill['chain'])}, {drill['wal_files']} WAL file(s) replayed, "
                              f"{drill['tables']} tables, {drill['rows']:,} rows; RTO {drill['rto_seconds']:.1f} s"))
    if result.get("rds"):
        drill = result["rds"]
        rows.append(checks.ok("RDS restore drill", drill["backup_id"], "restored, every table at least its rows",
                              f"scratch instance from {drill['backup_id']}, {drill['tables']} tables, "
                              f"{drill['rows']:,} rows; RTO {drill['rto_seconds']:.1f} s"))
    return rows
