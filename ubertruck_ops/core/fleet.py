"""Rolling over several app hosts: which hosts are down before a deploy, in what batches the rest
roll, and what a failure puts back. Pure functions, unit-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ubertruck_ops.core.text import human_seconds

WORK_POOL = "ubertruck-ops"     # the process work pool of every deployment and every app host's queue


def hosts_down(last_polled: dict[str, datetime | None], now: datetime, seen_within: timedelta) -> dict[str, str]:
    """Given each host's worker's last poll of its queue (None: never), return the hosts counted as
    down, each with why."""
    down = {}
    for host, polled in last_polled.items():
        if polled is None:
            down[host] = "never polled: no worker has started on its queue"
        elif now - polled > seen_within:
            down[host] = f"its worker last polled {int((now - polled).total_seconds())} s ago"
    return down


def rolling_hosts(hosts: list[str], down: dict[str, str], skip: list[str]) -> list[str]:
    """Given the fleet's hosts in order, those down and those the operator skips, return the hosts to
    roll. Raise ValueError naming a down host that is not skipped (nothing changes then), or a
    skipped host that is not in the fleet."""
    unknown = sorted(set(skip) - set(hosts))
    if unknown:
        raise ValueError(f"skip_hosts names {', '.join(unknown)}, not an app host of this environment "
                         f"({', '.join(hosts)})")
    refused = {h: why for h, why in down.items() if h not in skip}
    if refused:
        detail = "; ".join(f"{h}: {why} (queue app-host-{h})" for h, why in refused.items())
        raise ValueError(f"app host(s) down before the deploy, nothing was changed: {detail}; start the host's worker "
                         f"(prefect worker start --pool {WORK_POOL} --work-queue app-host-<host>) or pass "
                         f"skip_hosts={sorted(refused)}")
    rolling = [h for h in hosts if h not in skip]
    if not rolling:
        raise ValueError("every app host is skipped: nothing to deploy to")
    return rolling


def batches(hosts: list[str], at_once: int) -> list[list[str]]:
    """Given the hosts in rolling order, return them in batches of `at_once`, never all hosts in one
    batch when there are several (the balancer must keep one serving)."""
    size = max(1, min(at_once, len(hosts) - 1)) if len(hosts) > 1 else 1
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


# ---- host steps the rolling deploy stopped waiting for --------------------------------------------

NEVER_RAN = "never-ran"                   # cancelled before its flow ever ran: nothing changed on the host
MAY_HAVE_RUN = "may-have-run"             # it ran (or may still run): count the host as possibly switched


class StepExpired(ValueError):
    """A host step started after the rolling deploy had stopped waiting for it."""


def step_deadline(now: datetime, timeout_seconds: float) -> str:
    """Given when the rolling deploy starts a host step and how long it waits for it, return the
    step's `not_after` (ISO 8601, UTC): after it the step refuses to act, whoever starts it."""
    return (now + timedelta(seconds=timeout_seconds)).astimezone(UTC).isoformat()


def refuse_if_expired(not_after: str | None, now: datetime, what: str) -> None:
    """Raise StepExpired when `now` is past the step's `not_after` (empty: no deadline). Raise
    ValueError when `not_after` is not an ISO 8601 time with an offset."""
    if not not_after:
        return
    try:
        deadline = datetime.fromisoformat(not_after)
    except ValueError:
        raise ValueError(f"not_after {not_after!r} is not an ISO 8601 time (e.g. 2026-12-02T03:00:00+00:00)") from None
    if deadline.tzinfo is None:
        raise ValueError(f"not_after {not_after!r} has no UTC offset; give one (e.g. +00:00)")
    if now > deadline:
        late = human_seconds((now - deadline).total_seconds())
        raise StepExpired(f"{what} refused: it had to start by {deadline.isoformat()} and it is {late} later (the "
                          "rolling deploy had stopped waiting for it and moved on); nothing was changed")


def abandoned_step(state_type: str | None, last_polled: datetime | None, now: datetime, seen_within: timedelta,
                   what: str) -> str | None:
    """Given a host step's state type while the rolling deploy waits for it, when its host's worker last
    polled the host's queue (None: never) and the fleet's worker_seen_seconds, return why the step is
    given up on - it is still waiting for a worker (Scheduled, or Pending: taken but never started)
    and that worker has stopped polling - or None to go on waiting. A step that started is waited on
    until the step timeout: its process may be running whatever became of its worker."""
    if state_type not in ("SCHEDULED", "PENDING"):
        return None
    down = hosts_down({"host": last_polled}, now, seen_within)
    if "host" not in down:
        return None
    return f"{what} was never started: {down['host']} (worker_seen_seconds {seen_within.total_seconds():g} s)"


SELF_PUT_BACK = "self-put-back"           # its own step's run failed: the host put itself back


def batch_outcome(batch: list[str], failures: dict[str, str], step: str) -> tuple[list[str], dict[str, str]]:
    """Given a batch's hosts, host -> how its `step` failed (SELF_PUT_BACK, NEVER_RAN, or anything
    else: it crashed or timed out after it started) for the hosts that failed, return (the hosts that
    count as switched, in batch order: those that succeeded or may have switched, to put back on a
    failure; host -> what became of each other host, for the notice)."""
    switched, outcomes = [], {}
    for host in batch:
        failure = failures.get(host)
        if failure == SELF_PUT_BACK:
            outcomes[host] = "its own step failed; it put itself back"
        elif failure == NEVER_RAN:
            outcomes[host] = f"its {step} was cancelled before it started; unchanged"
        else:
            switched.append(host)
    return switched, outcomes


def timed_out_step_outcome(final_state: str | None, history: list[str]) -> str:
    """Given a timed-out host step run's state after cancelling it (None or a non-final type: the
    cancel could not be confirmed) and every state type it went through, return NEVER_RAN when it is
    confirmed Cancelled without ever having been Running (with its not_after deadline past, it
    cannot start later either), else MAY_HAVE_RUN."""
    if final_state == "CANCELLED" and "RUNNING" not in history:
        return NEVER_RAN
    return MAY_HAVE_RUN


# The final states of a deploy that may have switched some hosts and not finished the roll.
FAILED_DEPLOY_STATES = ("FAILED", "CRASHED", "CANCELLED")


def deploy_to_undo(newest: tuple[str, str, str] | None, go_live_started: int) -> str | None:
    """Given the environment's newest finished deploy or rollback flow run (flow run id, flow name,
    final state type; None: there is none) and how many of its go-live host steps started, return
    the flow run id of the deploy a rollback without a target undoes: that run, when it is a deploy
    that did not complete after reaching some host (each host goes back to what it ran before it, not
    further). None otherwise (a failed deploy that switched no host changed nothing to undo): the
    rollback goes to each host's release before its current one."""
    if newest is None:
        return None
    run_id, flow_name, state = newest
    return run_id if flow_name == "deploy" and state in FAILED_DEPLOY_STATES and go_live_started > 0 else None
