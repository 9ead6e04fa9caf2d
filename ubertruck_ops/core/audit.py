"""The release's dependency audit (`npm audit --json`), judged: does it stop the release, pass, or
could it not be done. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("info", "low", "moderate", "high", "critical")


@dataclass(frozen=True)
class AuditVerdict:
    """`passed`, `failed` (vulnerabilities at or over the level: the release stops) or `unavailable`
    (the registry could not be asked or refuses audits: a warning, never a failure). `text` says it."""

    kind: str
    text: str


def check_level(level: str) -> str:
    """Given an audit level from the app block, return it. Raise ValueError listing the levels."""
    if level not in LEVELS:
        raise ValueError(f"audit level {level!r} must be one of {', '.join(LEVELS)}")
    return level


def audit_verdict(package: str, report: dict | None, level: str, raw: str = "") -> AuditVerdict:
    """Given a package's name, npm audit's JSON report (None: no JSON at all; `raw`: what npm printed),
    and the level that stops a release, return the verdict."""
    if not isinstance(report, dict) or "error" in report or "metadata" not in report:
        why = (report or {}).get("message") if isinstance(report, dict) else None
        return AuditVerdict("unavailable", f"{package}: the audit could not be done "
                                           f"({(why or raw or 'no report').strip()[:200]}); not a failure")
    counts = report["metadata"].get("vulnerabilities", {})
    over = {name: counts.get(name, 0) for name in LEVELS[LEVELS.index(level):] if counts.get(name, 0)}
    if over:
        titles = sorted({via.get("title", "?") for item in report.get("vulnerabilities", {}).values()
                         for via in item.get("via", []) if isinstance(via, dict)
                         and LEVELS.index(via.get("severity", "info")) >= LEVELS.index(level)})
        found = ", ".join(f"{n} {name}" for name, n in over.items())
        return AuditVerdict("failed", f"{package}: npm audit found {found} (level {level} stops the release): "
                                      + "; ".join(titles[:5]))
    total = counts.get("total", 0)
    return AuditVerdict("passed", f"{package}: no vulnerability at {level} or above"
                                  + (f" ({total} below it)" if total else ""))
