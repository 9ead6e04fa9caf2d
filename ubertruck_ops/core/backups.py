"""When a planned incremental backup cannot go ahead: the base backup that starts a new chain
instead, and why. Pure functions, unit-tested."""

from __future__ import annotations

NO_PREVIOUS_MANIFEST = ("this host holds only public keys and no local copy of the previous backup's manifest, "
                        "so a new chain starts")


def base_instead(kind: str, failure: str | None = None) -> tuple[str, str] | None:
    """Given the kind of the backup planned and why it cannot go ahead, return ("base", why) for the
    backup to take instead, or None when it was a base already (nothing to fall back to: its failure
    stands).

    `failure` None: the previous backup's manifest, which an incremental is taken against, cannot
    be read here. Otherwise it is the incremental's own error (e.g. WAL summaries gone after a crash):
    a fresh chain is the safe answer to both.
    """
    if kind != "incremental":
        return None
    if failure is None:
        return "base", NO_PREVIOUS_MANIFEST
    return "base", f"the incremental failed ({failure[:200]}), so a new chain starts"
