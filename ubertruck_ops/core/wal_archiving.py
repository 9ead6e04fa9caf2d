"""Continuous WAL archiving's decisions; tasks/wal_stream.py acts on them. Pure functions.

- plan_slot: given the replication slot as pg_replication_slots shows it, stream from it, create it
  (dropped), drop and create it (invalidated: wal_status 'lost'), wait (our own walsender has not
  gone yet), or refuse (another archiver holds it).
- plan_resume: before pg_receivewal starts, where it will start and what nobody kept: the hole from
  after the newest segment kept (archived or in the spool) to the slot's restart position.
- backoff: 1 s doubling to 60 s between attempts of something that keeps failing.
- ArchiveHealth: what to tell Slack and the dead man's switch, given what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ubertruck_ops.core import notices
from ubertruck_ops.core.physical import parse_segment, segment_name

FIRST_BACKOFF, MAX_BACKOFF = 1.0, 60.0
PING_EVERY = 60.0        # the switch hears from us at most (and, while we run, at least) once a minute
STREAM_GRACE = 30.0      # pg_receivewal may be away this long (a server restart) before it is a problem


@dataclass(frozen=True)
class SlotState:
    """The archiver's slot as the server shows it (pg_replication_slots, pg_stat_replication)."""

    exists: bool
    active_pid: int | None = None        # the walsender streaming from it, when one does
    wal_status: str | None = None        # reserved, extended, unreserved, lost (PostgreSQL 13+)
    restart_segment: str | None = None   # the WAL file holding restart_lsn (None once invalidated)
    slot_type: str = "physical"
    holder: str = ""                     # the walsender's client, where pg_stat_replication shows it


@dataclass(frozen=True)
class SlotPlan:
    action: str      # "stream", "create", "recreate", "wait", "refuse"
    message: str = ""


def plan_slot(slot: SlotState, name: str, own_walsender: int | None = None) -> SlotPlan:
    """Given the slot and the walsender pid that last served this archiver, return what to do
    before pg_receivewal (re)starts."""
    if not slot.exists:
        return SlotPlan("create", f"replication slot {name} does not exist (dropped, or never created): creating it")
    if slot.slot_type != "physical":
        return SlotPlan("refuse", f"replication slot {name} is a {slot.slot_type} slot, not a physical one: it "
                                  "belongs to something else; give this archiver a slot of its own (--slot NAME)")
    if slot.active_pid is not None:
        if slot.active_pid == own_walsender:
            return SlotPlan("wait", f"the server has not yet noticed that this archiver's stream of slot {name} "
                                    f"ended (walsender pid {slot.active_pid})")
        holder = f" ({slot.holder})" if slot.holder else ""
        return SlotPlan("refuse", f"replication slot {name} is in use by another archiver: the server's walsender "
                                  f"pid {slot.active_pid}{holder} streams from it. Only one archiver may use a slot: "
                                  "stop the other one (or give this one a slot of its own with --slot NAME). A "
                                  "previous archiver that died without closing its connection lets go of the slot "
                                  "within the server's wal_sender_timeout (default 60 s)")
    if slot.wal_status == "lost":
        return SlotPlan("recreate", f"replication slot {name} was invalidated (wal_status lost): the server removed "
                                    "WAL it kept for it (max_slot_wal_keep_size); dropping and creating it anew")
    return SlotPlan("stream")


@dataclass(frozen=True)
class Hole:
    """Segments nobody kept: from `first` to `last`, `count` of them."""

    first: str
    last: str
    count: int

    def describe(self) -> str:
        if self.count == 1:
            return f"segment {self.first}"
        return f"segments {self.first} to {self.last} ({self.count} segments)"


@dataclass(frozen=True)
class Resume:
    hole: Hole | None = None
    set_aside_partial: bool = False    # the partial segment is older than anything the server keeps
    drop_marker: bool = False          # pg_receivewal must not start after the marker (the server lacks what follows)
    ahead: bool = False                # the spool is ahead of the server: it came from another cluster


def newest_segment(names, segment_size: int) -> str | None:
    """Given WAL file names (others ignored), return the newest segment's name, or None."""
    parsed = [(p, n) for n, p in ((n, parse_segment(n, segment_size)) for n in names) if p]
    return max(parsed)[1] if parsed else None


def plan_resume(newest_kept: str | None, partial: str | None, marker: str | None, keeps_from: str | None,
                fallback: str | None, segment_size: int, current: str | None = None) -> Resume:
    """Given the newest segment kept anywhere (archived, in the spool, or already reported lost),
    the segment pg_receivewal was receiving when it stopped (its .partial), the newest finished
    segment left in its folder (the marker), the first segment the server keeps for the slot
    (restart_lsn's), and where pg_receivewal starts with an empty folder (`fallback`: the slot's
    position, or for servers before 15, which cannot tell it, the current one), return how to
    resume and the hole, if any.

    pg_receivewal starts with the partial segment, else after the marker, else at the fallback. A
    partial or marker older than what the server keeps would make it ask for removed WAL forever:
    the partial is set aside for the repository, the marker dropped. So are a partial and a marker
    ahead of the server's `current` segment: they come from another cluster (rebuilt, restored).
    """
    keep = parse_segment(keeps_from, segment_size) if keeps_from else None
    if keep is None:
        return Resume()
    part = parse_segment(partial, segment_size) if partial else None
    mark = parse_segment(marker, segment_size) if marker else None
    now = parse_segment(current, segment_size) if current else None
    ahead = now is not None and ((part is not None and part > now) or (mark is not None and mark > now))
    if ahead:
        part_aside, mark = part is not None, None
        part = None
    else:
        part_aside = part is not None and part[1] < keep[1]
    aside = part_aside
    drop = False
    if part is not None and not aside:
        start = part[1]
    elif mark is not None and mark[1] + 1 >= keep[1]:
        start = mark[1] + 1
    else:
        drop = mark is not None or ahead
        fell = parse_segment(fallback, segment_size) if fallback else None
        start = max(keep[1], fell[1] if fell else keep[1])
    kept = parse_segment(newest_kept, segment_size) if newest_kept else None
    if ahead or kept is None or kept[1] + 1 >= start:
        return Resume(set_aside_partial=aside, drop_marker=drop, ahead=ahead)
    first, last = kept[1] + 1, start - 1
    return Resume(Hole(segment_name(keep[0], first, segment_size), segment_name(keep[0], last, segment_size),
                       last - first + 1), set_aside_partial=aside, drop_marker=drop)


def backoff(previous: float | None) -> float:
    """Given the last wait (None: it just started failing), return the next: 1 s doubling to 60 s."""
    return FIRST_BACKOFF if previous is None else min(MAX_BACKOFF, previous * 2)


@dataclass
class ArchiveHealth:
    """What the archiver tells Slack and its dead man's switch. No I/O: each method returns the
    signals to send, ("notice", payload) or ("ping", kind, message); the archiver sends them.

    Slack hears once when pushes start failing and once when the spool has caught up; once per
    segment the repository refuses for good; once per hole; once when pg_receivewal has been away
    longer than `stream_grace` and once when it is back. The switch gets /start, then at most once a
    minute a success while healthy (receiving, nothing failing: segments arriving or the server
    idle) or a /fail with a short reason while not; a change between the two is sent at once.
    """

    environment: str
    slot: str
    spool: str = ""
    ping_every: float = PING_EVERY
    stream_grace: float = STREAM_GRACE
    failing_since: float | None = None
    failing_reason: str = ""
    pushed_while_failing: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    receiving: bool = False
    down_since: float | None = None
    down_reason: str = ""
    down_told: bool = False
    last_ping: tuple[str, float] | None = None

    def started(self, now: float) -> list[tuple]:
        self.down_since = now
        return self._ping("start", now, f"wal-archive started: slot {self.slot}")

    def stream_up(self, now: float) -> list[tuple]:
        signals = []
        if self.down_told:
            signals.append(("notice", notices.wal_receiving_again(self.environment, self.slot,
                                                                  now - (self.down_since or now))))
        self.receiving, self.down_since, self.down_reason, self.down_told = True, None, "", False
        return signals

    def stream_down(self, now: float, reason: str) -> list[tuple]:
        self.receiving = False
        if self.down_since is None:
            self.down_since = now
        self.down_reason = reason
        return []

    def push_failed(self, now: float, reason: str, waiting: int) -> list[tuple]:
        self.failing_reason = reason
        if self.failing_since is not None:
            return []
        self.failing_since, self.pushed_while_failing = now, 0
        return [("notice", notices.wal_archive_failing(self.environment, reason, waiting, self.spool)),
                *self._ping("fail", now, self.problem(now))]

    def push_refused(self, now: float, name: str, reason: str) -> list[tuple]:
        if name in self.refused:
            return []
        self.refused[name] = reason
        return [("notice", notices.wal_segment_refused(self.environment, name, reason, self.spool)),
                *self._ping("fail", now, self.problem(now))]

    def pushed(self, name: str) -> None:
        self.refused.pop(name, None)
        if self.failing_since is not None:
            self.pushed_while_failing += 1

    def drained(self, now: float) -> list[tuple]:
        """Every file in the spool the repository takes was pushed, without a failure."""
        if self.failing_since is None:
            return []
        payload = notices.wal_archive_caught_up(self.environment, now - self.failing_since, self.pushed_while_failing)
        self.failing_since, self.failing_reason = None, ""
        return [("notice", payload)]

    def hole(self, now: float, hole: Hole, why: str, partial_kept: str | None) -> list[tuple]:
        payload = notices.wal_archive_hole(self.environment, self.slot, why, hole.describe(), partial_kept)
        return [("notice", payload), *self._ping("fail", now, f"WAL archive hole: {hole.describe()}")]

    def problem(self, now: float) -> str:
        """The short reason the archiver is not healthy now ('' when it is): no secret, no URL."""
        if self.refused:
            return f"{len(self.refused)} WAL segment(s) refused by the repository (different content archived)"
        if self.failing_since is not None:
            return f"repository failing for {now - self.failing_since:.0f} s: {self.failing_reason}"[:200]
        if self.down_since is not None and now - self.down_since >= self.stream_grace:
            return f"not receiving WAL for {now - self.down_since:.0f} s: {self.down_reason or 'starting'}"[:200]
        return ""

    def tick(self, now: float, archived: int = 0, waiting: int = 0) -> list[tuple]:
        signals = []
        if self.down_since is not None and not self.down_told and now - self.down_since >= self.stream_grace:
            self.down_told = True
            signals.append(("notice", notices.wal_not_receiving(self.environment, self.slot, now - self.down_since,
                                                                self.down_reason or "pg_receivewal is not running")))
        problem = self.problem(now)
        if problem:
            return signals + self._ping("fail", now, problem)
        if self.receiving:
            return signals + self._ping("success", now, f"receiving; {archived} WAL file(s) archived since start, "
                                                        f"{waiting} waiting")
        return signals

    def _ping(self, kind: str, now: float, message: str) -> list[tuple]:
        due = kind == "start" or self.last_ping is None or self.last_ping[0] != kind \
            or now - self.last_ping[1] >= self.ping_every
        if not due:
            return []
        self.last_ping = (kind, now)
        return [("ping", kind, message)]
