"""The summaries a deploy or rollback leaves in the Prefect UI (markdown artifacts), built from what
it did, without touching anything: the flows and the rolling deploy only publish them.

The Slack notices of the same runs are core/notices.py's; the two words that a rolling rollback
gives its notice instead of one release (each host has its own) are here, beside its summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ubertruck_ops.core.releases import HistoryEntry
from ubertruck_ops.core.text import human_seconds

HISTORY_ROWS = 10          # the newest entries of the host's history a deploy summary shows
NOTES_SHOWN = 20           # commit first lines a deploy's notice and summary list; the rest are counted


def release_notes(subjects: Sequence[str], shown: int = NOTES_SHOWN) -> list[str]:
    """Given the first lines of the commits a deploy brings (newest first), return the lines to show:
    at most `shown`, then one line counting the rest."""
    lines = [f"- {s[:120]}" for s in subjects[:shown]]
    if len(subjects) > shown:
        lines.append(f"- ... and {len(subjects) - shown} more commit(s)")
    return lines


def who_asked(parameter: str | None, created_by_type: str | None, created_by_name: str | None,
              auto_scheduled: bool) -> str:
    """Given the deploy's `requested_by` parameter and what Prefect recorded of the run's start, return
    who asked for it: the parameter (CI fills it with its actor); else the user or automation Prefect
    names; else "the schedule" for a scheduled run; else "unknown"."""
    if parameter and parameter.strip():
        return parameter.strip()[:100]
    if created_by_name:
        return f"{created_by_name} ({(created_by_type or 'user').lower()})"
    return "the schedule" if auto_scheduled else "unknown"


def deploy_summary(tag: str, commit: str, previous: str | None, services: Mapping[str, int], migrations: Sequence[str],
                   backup_id: str | None, pruned: Sequence[str], duration: float,
                   history: Sequence[HistoryEntry], requested_by: str = "unknown",
                   notes: Sequence[str] = ()) -> str:
    """Given what a single-host deploy did and the host's history (oldest first), return its summary:
    the facts, then the newest HISTORY_ROWS entries of the history, newest first."""
    rows = "\n".join(f"| {h.at[:19]} | {h.action} | {h.from_release or '-'} | {h.to_release} | {h.outcome} |"
                     for h in reversed(list(history)[-HISTORY_ROWS:]))
    return f"""# Deploy `{tag}`

- commit: `{commit}`
- requested by: {requested_by}
- previous release: {previous or 'none'}
- duration: {human_seconds(duration)}
- services: {', '.join(f'{s}:{p}' for s, p in services.items())} (PM2 cluster mode, handed over one by one)
- migrations: {', '.join(migrations) or 'none new'}{f' (backup `{backup_id}` first)' if backup_id else ''}
- releases pruned: {', '.join(pruned) or 'none'}

## Commits since {previous or 'the start'}

{chr(10).join(notes) or '- (none read)'}

| at (UTC) | action | from | to | outcome |
|---|---|---|---|---|
{rows}
"""


def rollback_summary(target: str, was_live: str | None, duration: float) -> str:
    """Given the release a single-host rollback put live, what was live before and how long it took,
    return its summary."""
    return (f"# Rollback to `{target}`\n\n- was live: {was_live or 'none'}\n"
            f"- duration: {human_seconds(duration)}\n- health gate: passed\n")


def rolling_deploy_summary(tag: str, hosts: Sequence[str], batches: int, skipped: Sequence[str],
                           duration: float) -> str:
    """Given the tag a rolling deploy put live, the hosts in the order they switched, in how many
    batches, the hosts skipped and how long it took, return its summary."""
    return (f"# Rolling deploy `{tag}`\n\n- hosts: {', '.join(hosts)} ({batches} batch(es))\n"
            f"- skipped: {', '.join(skipped) or 'none'}\n- duration: {human_seconds(duration)}\n")


def rolling_rollback_target(to: str | None, undo_run: str | None = None) -> str:
    """Given a rolling rollback's `to` and the failed deploy it undoes (its flow run id, or None),
    return how its title and summary name the target."""
    if to:
        return to
    return f"each host's release before the failed deploy (flow run {undo_run})" if undo_run else "the previous release"


def rolling_rollback_summary(to: str | None, hosts: Sequence[str], duration: float, undo_run: str | None = None) -> str:
    """Given a rolling rollback's `to` (None: each host's previous release, or its release before the
    failed deploy `undo_run`), the hosts it went through and how long it took, return its summary."""
    return (f"# Rolling rollback to `{rolling_rollback_target(to, undo_run)}`\n\n- hosts: {', '.join(hosts)}\n"
            f"- duration: {human_seconds(duration)}\n")


def rolling_rollback_releases(to: str | None, hosts: Sequence[str], undo_run: str | None = None) -> tuple[str, str]:
    """Given a rolling rollback's `to`, the hosts it went through and the failed deploy it undoes,
    return the (from, to) its notice names: each host left its own release, and went to `to`, to its
    release before that deploy, or to its own previous one."""
    went_to = to or ("each host's release before the failed deploy" if undo_run else "each host's previous release")
    return f"each host's own (hosts: {', '.join(hosts)})", went_to
