"""What the next run on a host does with the lock record a killed holder left behind (tasks/locks.py
reads the record and the API, and acts). Pure.

The record names the holder's lease and the API that granted it. The only slot the next run may give
back is one that THIS API counted for the dead holder: giving back any other slot by name frees a
slot that a live run holds (seen: a stale record of a private API made the next run decrement the
shared server's limit while a run on another host held it, and both ran).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# A lease recorded as renewed until less than this far ahead may already have been reaped by a server
# whose clock runs ahead of this host's (and a run elsewhere may hold the slot since): it counts as
# expired. Leases last 60 s (deploy) and 300 s (backup); a renewal comes every third of that.
EXPIRY_MARGIN_SECONDS = 30

RELEASE_LEASE = "release-lease"            # the API knows the lease: releasing it gives the slot back
GIVE_BACK_BY_NAME = "give-back-by-name"    # this API counts the slot but lost the lease: one slot by name
NOTHING = "nothing"                        # no slot of the dead holder is counted here


@dataclass(frozen=True)
class StaleLeaseAction:
    action: str      # RELEASE_LEASE, GIVE_BACK_BY_NAME or NOTHING
    why: str         # a sentence for the run log


def stale_lease_action(stale: dict, api: str, lease_known: bool, slots_taken: int | None,
                       now: float | None = None) -> StaleLeaseAction:
    """Given the record a dead holder left (lease_id, api, private_api, releasing, until), the API this
    run talks to, whether that API still knows the lease (a renewal succeeded), and how many slots of
    the limit it counts (None: the limit is gone), return what to give back.

    A private API's lease (`ubertruck-ops run` without PREFECT_API_URL) lived in the holder's own API
    process: when this API does not know it, it was never counted here, or the server that shares its
    leases on disk has revoked it with its slot. A lease of another API never counted here. Only this
    API's own lease, lost while it had not expired (a server that keeps leases in memory and
    restarted), leaves a slot counted that nobody will give back: that one slot goes back by name.
    """
    now = time.time() if now is None else now
    granted_by = str(stale.get("api") or "").rstrip("/")
    if lease_known:
        return StaleLeaseAction(RELEASE_LEASE, f"the API still knows its lease {stale.get('lease_id')}: "
                                               "releasing it gives back its slot")
    if stale.get("releasing"):
        return StaleLeaseAction(NOTHING, "it was releasing its lease when it ended; nothing left to give back")
    if stale.get("private_api"):
        return StaleLeaseAction(NOTHING, f"its lease was granted by a private API of its own ({granted_by or '?'}, "
                                         f"gone with it), never by {api}: no slot of it is counted here, so none "
                                         "is given back")
    if granted_by != api.rstrip("/"):
        return StaleLeaseAction(NOTHING, f"its lease was granted by another API ({granted_by or 'unknown'}), not "
                                         f"{api}: no slot of it is counted here, so none is given back")
    until = float(stale.get("until") or 0)
    if until - EXPIRY_MARGIN_SECONDS <= now:
        return StaleLeaseAction(NOTHING, "its lease ran out (or is about to); the server's lease reaper gives "
                                         "its slot back")
    if not slots_taken or slots_taken <= 0:
        return StaleLeaseAction(NOTHING, "no slot of the limit is taken; nothing to give back")
    return StaleLeaseAction(GIVE_BACK_BY_NAME, f"{api} no longer knows its unexpired lease (the server restarted "
                                               "and lost its leases) but still counts its slot: giving back that "
                                               "one slot by name")


def lease_lost(status_code: int | None, until: float, now: float | None = None) -> bool:
    """Given a failed renewal (`status_code`: the API's answer, None when it did not answer) and until
    when the lease was last renewed, return True when the slot is no longer ours: the API no longer
    knows the lease (404, 410), or it ran out while renewals failed. Otherwise the renewal is retried."""
    now = time.time() if now is None else now
    return status_code in (404, 410) or now > until
