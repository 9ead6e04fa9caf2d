"""Whether this host's clock may decide what is old. Pure policy: no I/O, unit-tested.

Retention deletes by age, and age is read off this host's clock. A clock that runs ahead (a VM
restored from a snapshot, an RTC reset before NTP answers) makes every backup look older by the
same amount: 45 days ahead, every backup of a 30-day window looks expired. So nothing is deleted
by age unless the host's clock agrees with clocks that are not its own, read during the same run:

- the database server's (`clock_timestamp()`, asked in the connection the backup itself uses);
- the repository's (S3's LastModified, or the folder's mtime, of the manifest just written).

They must agree within TOLERANCE. Five minutes: NTP keeps healthy clocks within milliseconds, and
S3 itself refuses requests signed more than 15 minutes off (RequestTimeTooSkewed), so five minutes
is far outside normal drift and round trips, yet far inside any age retention judges (days).

When every clock at hand jumped together (the database runs on the backup host, the repository is
a local folder), they agree and prove nothing. The backups' own history still shows the jump: a
backup schedule that runs daily has a backup from the last day or so. When the newest backup
before this run is older than SCHEDULE_ALLOWANCE, retention deletes nothing by age this run
(either the clock jumped, or backups stopped and someone should look before anything goes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ubertruck_ops.core.text import human_seconds

TOLERANCE = timedelta(minutes=5)
# The nightly runs every 24 h and the six-hourly every 6 h; 36 h lets one run start late or run
# long, and a single missed night costs one night without expiry (nothing is lost by waiting).
SCHEDULE_ALLOWANCE = timedelta(hours=36)


@dataclass(frozen=True)
class ClockReading:
    """Another clock's time, read between two readings of this host's clock."""

    source: str             # "the database server", "the repository (local folder /srv/backups)"
    before: datetime        # this host's clock just before asking
    after: datetime         # this host's clock once the answer came
    theirs: datetime        # the other clock's time, somewhere in between

    @property
    def ahead(self) -> timedelta:
        """How far this host's clock is ahead of the other (negative: behind); zero when the other
        clock's time falls inside the round trip, where no difference can be measured."""
        if self.theirs < self.before:
            return self.before - self.theirs
        if self.theirs > self.after:
            return self.after - self.theirs
        return timedelta(0)


def disagreement(readings: list[ClockReading], tolerance: timedelta = TOLERANCE) -> str | None:
    """Given readings of other clocks, return a sentence naming the first one this host's clock
    disagrees with by more than `tolerance`, else None."""
    for reading in readings:
        ahead = reading.ahead
        if abs(ahead) > tolerance:
            way = "ahead of" if ahead > timedelta(0) else "behind"
            return (f"this host's clock is {_span(abs(ahead))} {way} {reading.source}'s "
                    f"(host {reading.after.isoformat(timespec='seconds')}, {reading.source} "
                    f"{reading.theirs.isoformat(timespec='seconds')}); more than the {_span(tolerance)} allowed")
    return None


def server_offset(readings: list[ClockReading]) -> timedelta:
    """Given readings, return what to add to this host's clock to get the database server's time
    (manifests are dated by the server's clock: never in the future of the data they hold); zero
    without a reading of the server."""
    for reading in readings:
        if reading.source == DATABASE_SERVER:
            return -reading.ahead
    return timedelta(0)


DATABASE_SERVER = "the database server"


def retention_hold(readings: list[ClockReading], newest_before: datetime | None, now: datetime,
                   tolerance: timedelta = TOLERANCE, allowance: timedelta = SCHEDULE_ALLOWANCE) -> str | None:
    """Given the readings of other clocks taken this run, the finish time of the newest complete backup
    that was in the repository before this run (None: there was none) and this host's time, return
    why nothing may be deleted by age this run, or None when the clock may judge ages.

    Fails closed: no reading of another clock, a reading that disagrees beyond `tolerance`, or a
    newest backup older than the schedule allows, each hold."""
    if not readings:
        return ("no other clock could be read this run (the database server was not reached), so this host's "
                "clock is unchecked: nothing was deleted by age")
    problem = disagreement(readings, tolerance)
    if problem:
        return (f"{problem}: nothing was deleted by age, because a clock that runs ahead makes every backup look "
                "expired. Fix the time (timedatectl; check NTP), then the next backup applies retention")
    if newest_before is not None and now - newest_before > allowance:
        return (f"the newest backup before this run finished {_span(now - newest_before)} ago "
                f"({newest_before.isoformat(timespec='seconds')}), longer than the schedule allows "
                f"({_span(allowance)}): either this host's clock jumped ahead (the database server's and the "
                "repository's clocks agree with it, so they may have jumped too) or backups stopped. Nothing was "
                "deleted by age; check the time (timedatectl) and the last runs. Once a backup has run on schedule, "
                "the next one applies retention")
    return None


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    return human_seconds(seconds)


TARGET_TIME_EXAMPLE = "2026-11-24T17:00:00+05:30"


def parse_target_time(text: str | None) -> datetime | None:
    """Given a restore's target_time (ISO 8601 with an offset), return it as an aware datetime; None
    for none. Raise ValueError, with an example, when it does not parse or has no offset: the guide's
    times are India time while the tools count in UTC, so a bare `17:00` would be 5.5 hours off one
    way or the other, and a point-in-time restore to the wrong moment is silently wrong data."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"target_time {text!r} is not ISO 8601 with an offset, e.g. {TARGET_TIME_EXAMPLE} "
                         "(India time) or 2026-11-24T11:30:00Z (UTC)") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"target_time {text!r} has no offset, so it could be India time or UTC (5.5 hours apart): "
                         f"add one, e.g. {TARGET_TIME_EXAMPLE} for India time or {text}Z for UTC")
    return moment
