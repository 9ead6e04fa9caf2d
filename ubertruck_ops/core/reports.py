"""The markdown reports runs publish as Prefect artifacts (restores, drills, the daily status report),
built here beside core/notices.py (their Slack payloads) and published by operations/frame.py. Pure."""

from __future__ import annotations

import datetime as dt

from ubertruck_ops.core.checks import change
from ubertruck_ops.core.text import human_seconds


def restore_report(backup_id: str, target: str, duration: float, counts: dict[str, int], kept_as: str | None,
                   extracted: list[str]) -> str:
    """A logical restore into `target` (a database's description) that verified `counts` and swapped in."""
    return (f"# Restore of `{backup_id}`\n\n- target: {target}\n"
            f"- duration: {human_seconds(duration)}\n- tables verified: {len(counts)}, rows: {sum(counts.values()):,}\n"
            f"- previous database kept as: {kept_as or 'none (target was new)'}\n"
            f"- files extracted to: {extracted or 'not requested'}\n")


def physical_restore_report(result: dict, target_time: str | None, keep_running: bool, duration: float) -> str:
    """A physical restore's `result` (chain, wal_files, data_directory, port) as rebuilt up to `target_time`."""
    return (f"# Physical restore\n\n- chain: {' -> '.join(result['chain'])}\n- target time: {target_time or 'latest'}\n"
            f"- WAL files replayed: {result['wal_files']}\n- data directory: {result['data_directory']}\n"
            f"- server: {'running on 127.0.0.1:' + str(result['port']) if keep_running else 'stopped'}\n"
            f"- duration: {human_seconds(duration)}\n")


def rds_restore_report(rds_instance: str, result: dict) -> str:
    """An RDS restore's `result` (restored, endpoint, row_counts, duration_seconds) into a new instance."""
    return (f"# RDS restore into `{rds_instance}`\n\n- restored: `{result['restored']}`\n"
            f"- endpoint: {result['endpoint']}\n- tables: {len(result['row_counts'])}, "
            f"rows: {sum(result['row_counts'].values()):,}\n- duration: {human_seconds(result['duration_seconds'])}\n"
            "- the source instance was not touched\n")


def drill_report(backup: str, passed: bool, rto: float, rpo: float, counts: dict, expected: dict,
                 findings: list[str]) -> str:
    """A logical restore drill: every table's rows as the manifest has them (`expected`) and as restored."""
    rows = "\n".join(f"| {t} | {expected.get(t, '-')} | {counts.get(t, '-')} | "
                     f"{'ok' if expected.get(t) == counts.get(t) else 'MISMATCH'} |"
                     for t in sorted(set(expected) | set(counts)))
    lines = "\n".join(f"- {f}" for f in findings) or "- none"
    return f"""# Restore drill: {'PASSED' if passed else 'FAILED'}

- backup: `{backup}`
- RTO (start to verified): {human_seconds(rto)}
- RPO at drill time (age of the backup): {human_seconds(rpo)}

| table | manifest rows | restored rows | |
|---|---|---|---|
{rows}

Findings:
{lines}
"""


def physical_drill_report(passed: bool, chain: str, wal_files: int | None, rto: float, rpo: float,
                          findings: list[str]) -> str:
    """A physical restore drill: the chain rebuilt (or "(not restored)"), the WAL replayed (None: none)."""
    return (f"# Physical restore drill: {'PASSED' if passed else 'FAILED'}\n\n- chain: {chain}\n"
            f"- WAL files replayed: {wal_files if wal_files is not None else '-'}\n- RTO: {human_seconds(rto)}\n"
            f"- RPO (age of the newest archived WAL): {human_seconds(rpo)}\n"
            + "".join(f"- finding: {f}\n" for f in findings))


NO_FIGURES = "Daily metrics could not be measured (see the checks above)."


def charted_metrics(figures: dict[str, tuple]) -> list[str]:
    """The metrics a day-over-day chart can show: those measured yesterday too."""
    return [label for label, (before, _now) in figures.items() if before is not None]


def status_report(today: dt.date, yesterday: dt.date, figures: dict[str, tuple], image_base64: str, stored_at: str) -> str:
    """The evening's daily status report: every figure (yesterday, today) with its change, and the
    chart inline (a base64 PNG) and where it is stored."""
    rows = "\n".join(f"| {label} | {before if before is None else f'{before:,.1f}'} | {now:,.1f} | "
                     f"{change(now, before)} |" for label, (before, now) in figures.items())
    return f"""## Daily status report {today} (against {yesterday})

| metric | {yesterday} | {today} | change |
|---|---:|---:|---:|
{rows}

![day over day](data:image/png;base64,{image_base64})

Chart stored at {stored_at}.
"""


def chart_note(stored_at: str) -> str:
    """The Slack line that says where the daily chart is."""
    return f":bar_chart: daily chart: {stored_at}"
