"""Reports kept in the backup repository beside the backups (under reports/, which retention
of backups never touches): the daily chart and the daily figures history that the monthly
review and capacity planning read. A new worker finds them there; no local state."""

from __future__ import annotations

import datetime as dt
import json

from ubertruck_ops.tasks.repository import Repository

HISTORY_DAYS = 400


def _prefix(environment: str) -> str:
    return f"reports/{environment}"


def store_report_file(repo: Repository, environment: str, day: dt.date, name: str, data: bytes) -> str:
    """Store a report file for `day`; return where to see it (a 7-day link on S3, a path locally)."""
    key = f"{_prefix(environment)}/{day:%Y/%m/%d}/{name}"
    repo.put_bytes(key, data)
    return repo.link(key)


def read_history(repo: Repository, environment: str) -> dict[str, dict]:
    """Return {YYYY-MM-DD: figures} recorded by earlier runs (empty the first time).
    Raise when the history exists but cannot be read: record_day would otherwise overwrite
    months of figures with one day."""
    key = f"{_prefix(environment)}/daily-figures.json"
    if not any(item.key == key for item in repo.list(_prefix(environment))):
        return {}
    return json.loads(repo.get_bytes(key))


def record_day(repo: Repository, environment: str, day: dt.date, figures: dict) -> dict[str, dict]:
    """Merge `figures` into the history for `day`, keep the newest HISTORY_DAYS days; return the history."""
    history = read_history(repo, environment)
    history[day.isoformat()] = {**history.get(day.isoformat(), {}), **figures}
    kept = dict(sorted(history.items())[-HISTORY_DAYS:])
    repo.put_bytes(f"{_prefix(environment)}/daily-figures.json", json.dumps(kept, indent=1).encode())
    return kept
