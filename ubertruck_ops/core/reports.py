"""The markdown reports runs publish as Prefect artifacts (backups, restores, drills, checklists, the
daily status report) and the checklists' Slack summary, built here beside core/notices.py (the other
Slack payloads) and published by operations/frame.py. Pure."""

from __future__ import annotations

import datetime as dt

from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult, change
from ubertruck_ops.core.manifest import Manifest, backup_folder
from ubertruck_ops.core.text import human_bytes, human_seconds


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


def status_report(today: dt.date, yesterday: dt.date, figures: dict[str, tuple], image_base64: str,
                  stored_at: str) -> str:
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


def nightly_backup_report(manifest: Manifest, duration: float, retention: dict, repository: str,
                          odd: list[str]) -> str:
    """A nightly backup stored in `repository` (its description): every object and table, what looked
    odd against the recent backups, and what retention did."""
    rows = "\n".join(f"| {o.name} | {human_bytes(o.size)} | `{o.sha256[:16]}…` |" for o in manifest.objects)
    tables = "\n".join(f"| {t} | {n:,} |" for t, n in manifest.row_counts.items())
    missing = "\n".join(f"- {p}" for p in manifest.missing_paths) or "- none"
    return f"""# Nightly backup `{manifest.backup_id}`

- repository: {repository}/{backup_folder(manifest.backup_id)}
- database: {manifest.database['name']} (PostgreSQL {manifest.database['server_version']})
- duration: {human_seconds(duration)}
- encryption: GnuPG {manifest.encryption['mode']}, AES256
- compared with the recent backups: {'; '.join(f"WARNING {a}" for a in odd) or 'like them'}

| object | size | sha256 |
|---|---|---|
{rows}

| table | rows (same snapshot as the dump) |
|---|---|
{tables}

Missing optional paths (not archived):
{missing}

Retention: expired {len(retention['expired'])}, incomplete leftovers removed {len(retention['incomplete_removed'])},
stale multipart uploads aborted {retention['uploads_aborted']}, {human_bytes(retention['bytes_freed'])} freed;
kept because their manifest is unreadable: {', '.join(sorted(retention['unreadable'])) or 'none'}.
{('**Clock:** ' + retention['held']) if retention.get('held') else ''}
{('**Clock:** ' + retention['clock_warning']) if retention['clock_warning'] else ''}
"""


def six_hourly_report(tier: str, tier_why: str, result: dict) -> tuple[str, str]:
    """A six-hourly run's `result` (a backup, or a recovery point proven by WAL) under its tier: return
    its title and markdown."""
    kind, wal, point = result["kind"], result["wal"], result["recovery_point"]
    if point:
        title = f"recovery point {point['time']}"
        body = (f"- recovery point: {point['time']} (LSN {point['lsn']}, segment {point['segment']})\n"
                f"- WAL checked this run: {point['segments_checked']} segment(s)\n")
    else:
        title = f"{kind} backup {result['backup_id']}"
        body = f"- parent: {result['parent'] or 'none (new chain)'}\n- stored: {result['stored']}\n"
    gaps = ", ".join(result["wal_gaps"][:5]) or "none"
    markdown = (f"# Six-hourly backup: {title}\n\n- tier: {tier} ({tier_why})\n- why: {result['why']}\n{body}"
                f"- chain base: {result['chain_base']}\n"
                f"- WAL {wal['start_lsn']} to {wal['end_lsn']}, timeline {wal['timeline']}\n"
                f"- duration: {human_seconds(result['duration_seconds'])}\n"
                f"- WAL archive gaps since the chain's base: {gaps}\n")
    return title, markdown


_ICONS = {checks.CRITICAL: ":red_circle:", checks.ERROR: ":grey_question:", checks.WARN: ":warning:",
          checks.OK: ":white_check_mark:"}
# The UI renders artifacts as plain Markdown: Slack's shortcodes would show as text there.
_MARKS = {checks.CRITICAL: "\U0001F534", checks.ERROR: "\u2754", checks.WARN: "\u26A0\uFE0F", checks.OK: "\u2705"}


def checklist_slack_summary(title: str, environment: str, results: list[CheckResult],
                            extra: list[str] | None = None) -> dict:
    """Given results, return a Slack payload: counts, then critical, error and warn items, worst first."""
    tally = checks.counts(results)
    verdict = checks.worst(results)
    head = f"{_ICONS[verdict]} [{environment}] {title}: " + ", ".join(f"{n} {s}" for s, n in tally.items() if n)
    lines = [f"{_ICONS[r.status]} *{r.name}*: {r.detail}" for r in checks.ordered(results) if r.status != checks.OK]
    if len(lines) > 25:
        lines = lines[:25] + [f"... and {len(lines) - 25} more in the Prefect artifact"]
    lines += extra or []
    return {"text": head, "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                                  "text": "\n".join([f"*{head}*", *lines])[:2900]}}]}


def checklist_report(title: str, results: list[CheckResult], body: str = "") -> str:
    """A checklist's or maintenance run's markdown: the tally, then every check worst first, then `body`."""
    rows = "\n".join(f"| {_MARKS[r.status]} {r.status} | {r.severity or '-'} | {r.name} | {r.to_row()['value']} | "
                     f"{r.to_row()['threshold']} | {r.detail.replace('|', '/')} |" for r in checks.ordered(results))
    tally = ", ".join(f"{n} {s}" for s, n in checks.counts(results).items())
    return f"""# {title}

{tally}

| status | severity | check | value | threshold | detail |
|---|---|---|---|---|---|
{rows}

{body}
"""


def rds_snapshot_report(instance_id: str, snapshot_id: str, copied: str | None, dr_region: str | None,
                        retention_days: float, expired: list[str], results: list[CheckResult],
                        errors: list[str]) -> str:
    """A six-hourly RDS snapshot: its DR copy (None: failed when `dr_region` is set), what expired, the
    errors met and every check worst first."""
    rows = "\n".join(f"| {r.name} | {r.status} | {r.value} | {r.threshold} | {r.detail} |"
                     for r in checks.ordered(results))
    return (f"# Six-hourly RDS snapshot of `{instance_id}`\n\n- snapshot: `{snapshot_id}` (available, kept)\n"
            f"- DR copy: {copied or ('FAILED' if dr_region else 'none configured')}\n"
            f"- expired (older than {retention_days:g} days): {', '.join(expired) or 'none'}\n"
            + "".join(f"- error: {e}\n" for e in errors)
            + f"\n| check | status | value | threshold | detail |\n|---|---|---|---|---|\n{rows}\n")


def rds_drill_report(passed: bool, backup: str, scratch: str | None, not_deleted: bool, leftovers: list[str],
                     counts: dict, rto: float, rpo: float, findings: list[str]) -> str:
    """An RDS restore drill into the scratch instance `scratch` (`not_deleted`: deleting it failed)."""
    return (f"# RDS restore drill: {'PASSED' if passed else 'FAILED'}\n\n- restored: `{backup}`\n"
            f"- scratch instance: `{scratch or '-'}` ({'NOT deleted' if not_deleted else 'deleted'})\n"
            f"- leftover scratch instances deleted: {', '.join(leftovers) or 'none'}\n"
            f"- tables: {len(counts)}, rows: {sum(counts.values()):,}\n"
            f"- RTO (restore to verified): {human_seconds(rto)}\n"
            f"- RPO at drill time (age of what was restored): {human_seconds(rpo)}\n"
            + "".join(f"- finding: {f}\n" for f in findings))
