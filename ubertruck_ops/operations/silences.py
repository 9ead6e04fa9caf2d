"""`ubertruck-ops silence | silences | unsilence`: make, list and end silences (core/alerts.py
decides what they cover; tasks/silences.py stores them; operations/alerts.py honours them). A
silence is announced in Slack when made and when it ends, and always ends: at most 7 days."""

from __future__ import annotations

import getpass
import secrets
from dataclasses import replace
from datetime import UTC, datetime

from ubertruck_ops.blocks.environment import block_name
from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.core import alerts, notices
from ubertruck_ops.core.alerts import Silence
from ubertruck_ops.tasks.automation_pause import set_paused
from ubertruck_ops.tasks.notify import notify
from ubertruck_ops.tasks.silences import read_silences, write_silences


def _slack(environment: str) -> SlackNotices:
    try:
        return SlackNotices.load(block_name(environment, "slack"))
    except ValueError:
        raise ValueError(f"environment {environment} has no blocks: run `ubertruck-ops blocks init --name "
                         f"{environment}` first") from None


def make(environment: str, duration: str, reason: str, target: str | None = None,
         now: datetime | None = None) -> Silence:
    """Silence `target` (None: everything) of `environment` for `duration`; announce it. Raise
    ValueError for an unreadable or too long duration, an empty reason, or an unknown environment."""
    now = now or datetime.now(UTC)
    length = alerts.parse_duration(duration)
    if not reason or not reason.strip():
        raise ValueError("a silence needs a --reason: the people it keeps from being paged will read it")
    slack = _slack(environment)
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = ""
    silence = Silence(id=secrets.token_hex(4), environment=environment, starts=now, ends=now + length,
                      reason=reason.strip()[:500], target=(target or "").strip() or None, created_by=who)
    write_silences(environment, alerts.kept_silences(read_silences(environment), now) + [silence])
    set_paused(environment, silence, True, [])
    notify.fn(slack, notices.silence_started(silence))
    return silence


def end(environment: str, silence_id: str, now: datetime | None = None) -> Silence:
    """End silence `silence_id` of `environment` now; announce it. Raise ValueError when no active
    silence has that id."""
    now = now or datetime.now(UTC)
    current = read_silences(environment)
    found = next((s for s in current if s.id == silence_id and s.ends > now), None)
    if found is None:
        raise ValueError(f"no active silence {silence_id!r} in {environment} (`ubertruck-ops silences --environment "
                         f"{environment}` lists them)")
    ended = replace(found, ends=now, announced_end=True)
    write_silences(environment, [ended if s.id == silence_id else s for s in current])
    set_paused(environment, ended, False, [s for s in current if s.id != silence_id and s.ends > now])
    notify.fn(_slack(environment), notices.silence_ended(ended, early=True))
    return ended


def listing(environment: str, now: datetime | None = None) -> list[str]:
    """One line per silence of `environment`: active ones, then those ended in the last day."""
    now = now or datetime.now(UTC)
    lines = []
    for s in sorted(read_silences(environment), key=lambda s: (s.ends <= now, s.ends)):
        state = "active until" if s.ends > now else "ended"
        lines.append(f"{s.id}  {state} {s.ends:%Y-%m-%d %H:%M:%S %Z}  {s.target or 'every alert'}  "
                     f"reason: {s.reason}" + (f"  by {s.created_by}" if s.created_by else ""))
    return lines
