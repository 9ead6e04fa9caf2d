"""This host's private state folder of an environment: local manifests of physical backups, the WAL
spool, lock files. One place, so every part of a host finds the others' state."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir(environment: str) -> Path:
    """Return `environment`'s state folder: UBERTRUCK_STATE_DIR/<environment>, by default under
    ~/.local/state/ubertruck-ops (XDG's place for state that outlives a run)."""
    default = Path.home() / ".local" / "state" / "ubertruck-ops"
    return Path(os.environ.get("UBERTRUCK_STATE_DIR") or default) / environment
