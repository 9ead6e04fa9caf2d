"""Slack notice payloads, built here and sent by tasks/notify.py. Pure functions."""

from __future__ import annotations

from ubertruck_ops.core.app_config import config_label
from ubertruck_ops.core.manifest import Manifest
from ubertruck_ops.core.text import human_bytes, human_seconds


def _payload(text: str, lines: list[str]) -> dict:
    return {"text": text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join([f"*{text}*", *lines])}}]}


def backup_succeeded(environment: str, manifest: Manifest, duration: float, what: str = "nightly backup",
                     warnings: list[str] | None = None) -> dict:
    sizes = ", ".join(f"{o.role} {human_bytes(o.size)}" for o in manifest.objects)
    lines = [f"backup id: `{manifest.backup_id}`", f"stored: {sizes}", f"duration: {human_seconds(duration)}"]
    if manifest.row_counts:
        lines.append(f"tables: {len(manifest.row_counts)}, rows: {sum(manifest.row_counts.values()):,}")
    if manifest.parent:
        lines.append(f"parent: `{manifest.parent}`")
    if manifest.missing_paths:
        lines.append("not archived (missing): " + ", ".join(manifest.missing_paths))
    lines += [f":warning: {w}" for w in warnings or []]
    return _payload(f":white_check_mark: [{environment}] {what} completed", lines)


def recovery_point_recorded(environment: str, point: dict, duration: float, warnings: list[str] | None = None) -> dict:
    """A base-and-WAL chain's six-hourly run proved that everything up to `point` is restorable."""
    lines = [f"restorable up to: {point['time']} (LSN {point['lsn']})", f"chain base: `{point['base']}`",
             f"WAL checked: {point['segments_checked']} new segment(s), {human_bytes(point['bytes_checked'])}",
             f"duration: {human_seconds(duration)}"]
    lines += [f":warning: {w}" for w in warnings or []]
    return _payload(f":white_check_mark: [{environment}] recovery point recorded", lines)


def operation_failed(operation: str, environment: str, step: str, error: str, extra: list[str] | None = None) -> dict:
    return _payload(f":x: [{environment}] {operation} FAILED at step '{step}'",
                    [f"error: {error[:1500]}", *(extra or [])])


def backup_kept_after_failure(operation: str, environment: str, backup_id: str, step: str, error: str) -> dict:
    """A step after the manifest failed: the run failed, the backup did not."""
    return _payload(f":x: [{environment}] {operation} FAILED at step '{step}' after backup {backup_id} completed: "
                    "the backup is complete and kept",
                    [f"backup id: `{backup_id}` (complete and kept: restore can use it)", f"error: {error[:1500]}"])


def after_failed_backup(retention: dict) -> list[str]:
    """Given what retention did after a failed backup, return the lines a failure notice adds."""
    if "expired" not in retention:
        return ["retention after the failure could not run (see the run log)"]
    if not retention["expired"] and not retention.get("bytes_freed"):
        return []
    return [f"retention after the failure freed {human_bytes(retention.get('bytes_freed', 0))}: "
            f"{len(retention['expired'])} expired backup(s) deleted"]


def unreadable_manifests(environment: str, unreadable: dict[str, str]) -> dict:
    """Retention kept folders whose manifest it cannot read: name each key and why."""
    lines = [f"`{key}`: {why[:300]}" for key, why in sorted(unreadable.items())[:20]]
    if len(unreadable) > 20:
        lines.append(f"... and {len(unreadable) - 20} more (see the run log)")
    lines.append("these backups are never deleted by retention and not used by restore: check them "
                 "(a newer release may read them), then repair or remove them by hand")
    return _payload(f":warning: [{environment}] retention kept {len(unreadable)} backup(s) whose manifest it cannot "
                    "read", lines)


def restore_succeeded(environment: str, target: str, backup_id: str, duration: float, kept_as: str | None) -> dict:
    lines = [f"backup id: `{backup_id}`", f"target: {target}", f"duration: {human_seconds(duration)}"]
    if kept_as:
        lines.append(f"previous database kept as `{kept_as}` (drop it once satisfied)")
    return _payload(f":recycle: [{environment}] restore completed", lines)


def drill_report(environment: str, backup_id: str, passed: bool, rto_seconds: float, rpo_seconds: float,
                 mismatches: list[str]) -> dict:
    icon, verdict = (":white_check_mark:", "passed") if passed else (":rotating_light:", "FAILED")
    lines = [f"backup id: `{backup_id}`", f"RTO (start to verified): {human_seconds(rto_seconds)}",
             f"RPO at drill time (backup age): {human_seconds(rpo_seconds)}"]
    lines += [f"mismatch: {m}" for m in mismatches[:20]]
    return _payload(f"{icon} [{environment}] restore drill {verdict}", lines)


def deploy_started(environment: str, tag: str, live: str | None, requested_by: str | None = None) -> dict:
    lines = [f"live now: {live or 'nothing yet'}"] + ([f"requested by: {requested_by}"] if requested_by else [])
    return _payload(f":rocket: [{environment}] deploy of {tag} started", lines)


def deploy_succeeded(environment: str, tag: str, previous: str | None, duration: float,
                     migrations: list[str], backup_id: str | None, warnings: list[str] | None = None,
                     requested_by: str | None = None, notes: list[str] | None = None) -> dict:
    lines = [f"live: *{tag}* (was {previous or 'nothing'})", f"duration: {human_seconds(duration)}"]
    if requested_by:
        lines.append(f"requested by: {requested_by}")
    if notes:
        lines.append("commits:\n" + "\n".join(notes))
    if migrations:
        lines.append(f"migrations applied: {', '.join(migrations)} (database backed up first: `{backup_id}`)")
    lines += [f":warning: {warning[:300]}" for warning in (warnings or [])[:7]]
    return _payload(f":white_check_mark: [{environment}] deploy of {tag} succeeded", lines)


def deploy_rolled_back(environment: str, tag: str, restored: str, step: str, error: str) -> dict:
    return _payload(f":rewind: [{environment}] deploy of {tag} ROLLED BACK at step '{step}'",
                    [f"serving again: *{restored}* (health gate passed)", f"error: {error[:1500]}"])


BACK_IN = "back in"      # a host's put-back into the load balancer succeeded (operations/rolling.py)


def rolling_failed(operation: str, environment: str, step: str, error: str, put_back: dict[str, str],
                   untouched: list[str], balancer: dict[str, str] | None = None) -> dict:
    """A rolling deploy or rollback failed on a host: which, what every host it changed now runs, and
    what became of the hosts it took out of the load balancer (`balancer`: host -> BACK_IN or why its
    put-back failed; None: there is no load balancer). Every line says what was done."""
    lines = [f"error: {error[:1500]}"]
    lines += [f"{host}: {outcome}" for host, outcome in put_back.items()] or ["no host had been switched"]
    if untouched:
        lines.append(f"never touched: {', '.join(untouched)}")
    if balancer is not None:
        back = [host for host, outcome in balancer.items() if outcome == BACK_IN]
        out = {host: outcome for host, outcome in balancer.items() if outcome != BACK_IN}
        if out:
            lines += [f":warning: {host} is OUT of the load balancer: putting it back failed ({why}); put it back by "
                      "hand before the next rolling deploy" for host, why in out.items()]
            if back:
                lines.append(f"put back into the load balancer: {', '.join(back)}")
        elif back:
            lines.append(f"every host is back in the load balancer (put back: {', '.join(back)})")
        else:
            lines.append("no host was out of the load balancer when it failed")
    return _payload(f":x: [{environment}] {operation} FAILED at step '{step}'", lines)


def reconfigure_succeeded(environment: str, what: str, changed: str, duration: float) -> dict:
    """The services of `what` ("v1.2.0", "every host") run with the new configuration; `changed` says
    from which version to which, or on which hosts."""
    return _payload(f":gear: [{environment}] configuration of {what} changed",
                    [changed, f"duration: {human_seconds(duration)} (health gate passed)"])


def reconfigure_put_back(environment: str, tag: str, old: int, step: str, error: str) -> dict:
    return _payload(f":rewind: [{environment}] configuration change of {tag} PUT BACK at step '{step}'",
                    [f"serving again: *{tag}* with {config_label(old)} (health gate passed)", f"error: {error[:1500]}"])


def rollback_succeeded(environment: str, from_release: str | None, to_release: str, duration: float) -> dict:
    return _payload(f":rewind: [{environment}] rolled back to {to_release}",
                    [f"was: {from_release or 'nothing'}", f"duration: {human_seconds(duration)} (health gate passed)"])


def watch_transition(environment: str, kind: str, target: str, severity: str, detail: str, seconds: float) -> dict:
    """What `watch` posts when a target goes down, stays down (a reminder) or recovers."""
    # A critical finding is an outage ("DOWN"); a high or medium one is a limit passed (CPU, queue, ...).
    state = "DOWN" if severity == "critical" else "over its limit"
    if kind == "down":
        icon = ":rotating_light:" if severity == "critical" else ":warning:"
        return _payload(f"{icon} [{environment}] {severity.upper()}: {target} is {state}", [detail[:1500]])
    if kind == "reminder":
        return _payload(f":rotating_light: [{environment}] still {state} after {human_seconds(seconds)}: {target}",
                        [detail[:1500]])
    return _payload(f":white_check_mark: [{environment}] {target} recovered after {human_seconds(seconds)}",
                    [detail[:1500]])


# wal-archive (tasks/wal_stream.py, decided by core/wal_archiving.py): no secret and no URL in any of these.

def wal_archive_failing(environment: str, reason: str, waiting: int, spool: str) -> dict:
    """Pushes to the repository started failing: the archiver keeps receiving and keeps the segments."""
    return _payload(f":warning: [{environment}] WAL archiving is failing: {reason[:300]}",
                    [f"segments waiting: {waiting}, kept on this host in `{spool}` and retried with backoff "
                     "(1 s doubling to 60 s) for as long as it fails",
                     "nothing is lost while this host's disk holds them; a notice follows once it has caught up"])


def wal_archive_caught_up(environment: str, seconds: float, segments: int) -> dict:
    return _payload(f":white_check_mark: [{environment}] WAL archive caught up after {human_seconds(seconds)} of "
                    "failures", [f"segments archived from the spool since the first failure: {segments}"])


def wal_segment_refused(environment: str, name: str, reason: str, spool: str) -> dict:
    """A segment whose push can never succeed as things stand (different content archived under its name)."""
    return _payload(f":rotating_light: [{environment}] CRITICAL: WAL segment {name} cannot be archived",
                    [f"reason: {reason[:500]}",
                     f"it stays in `{spool}/ready` (never deleted) and is tried again every few minutes; the others "
                     "go on",
                     "the repository holds other content under this name: another cluster or an older timeline "
                     "archives into the same place. Give each cluster a repository prefix of its own; once the "
                     "archived object is known to be wrong, move it away and the segment is archived by itself"])


def wal_archive_hole(environment: str, slot: str, why: str, hole: str, partial_kept: str | None) -> dict:
    """The server no longer keeps WAL the archive never got: point-in-time restores cannot cross it."""
    lines = [why[:500], f"missing from the archive: {hole}; no point-in-time restore can cross it"]
    if partial_kept:
        lines.append(f"the start of {partial_kept} was kept and archived as {partial_kept}.partial")
    lines.append("take a new base backup now (`ubertruck-ops run incremental-backup --param force_full=true`) so "
                 "restores can start after the hole, and find out why the archiver fell behind")
    return _payload(f":rotating_light: [{environment}] CRITICAL: the WAL archive has a hole (slot {slot})", lines)


def wal_not_receiving(environment: str, slot: str, seconds: float, reason: str) -> dict:
    return _payload(f":warning: [{environment}] wal-archive has not received WAL for {human_seconds(seconds)}",
                    [f"reason: {reason[:500]}", f"it keeps trying; meanwhile the server keeps WAL for slot {slot} "
                     "(bounded by max_slot_wal_keep_size)"])


def wal_receiving_again(environment: str, slot: str, seconds: float) -> dict:
    return _payload(f":white_check_mark: [{environment}] wal-archive receives WAL again (slot {slot})",
                    [f"it was not receiving for {human_seconds(seconds)}"])


# Silences (core/alerts.py): announced when made and when they end, so nobody forgets one.

def silence_started(silence) -> dict:
    what = silence.target or "every alert"
    return _payload(f":mute: [{silence.environment}] alerts silenced for {what} until {silence.ends:%Y-%m-%d %H:%M %Z}",
                    [f"reason: {silence.reason[:500]}", f"silence id: `{silence.id}`"
                     + (f" (by {silence.created_by})" if silence.created_by else ""),
                     "alerts are still recorded (run logs, the Event Feed) but page, email and post nothing; "
                     f"`ubertruck-ops unsilence {silence.id}` ends it early"])


def silence_ended(silence, early: bool = False) -> dict:
    what = silence.target or "every alert"
    how = "ended early" if early else "expired"
    return _payload(f":loud_sound: [{silence.environment}] silence of {what} {how}: alerts reach people again",
                    [f"reason it was made: {silence.reason[:500]}", f"silence id: `{silence.id}`"])
