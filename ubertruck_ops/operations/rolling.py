"""A deploy or rollback over several app hosts behind a load balancer, orchestrated by Prefect.

The story: refuse when a host's worker is down (unless skipped); build the tag on every host at
once (nothing live changes); on the first host back up and apply the migrations, once; then roll
host by host (or in the fleet's batches): deregister it from the balancer, switch it (hand-over and
health gate, on the host's own worker), register it again. A failure on any host puts every host it
already switched back on what it ran before, and leaves every host registered in the balancer.

Every host step is a run of the `host-release` deployment in that host's work queue, a subflow of
this run: the UI shows each host's runs under it.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from prefect.runtime import flow_run

from ubertruck_ops.blocks.app import AppHost, default_of
from ubertruck_ops.blocks.fleet import AppFleet
from ubertruck_ops.core import notices
from ubertruck_ops.core.deploy_reports import (
    rolling_deploy_summary,
    rolling_rollback_releases,
    rolling_rollback_summary,
    rolling_rollback_target,
)
from ubertruck_ops.core.fleet import (
    MAY_HAVE_RUN,
    NEVER_RAN,
    SELF_PUT_BACK,
    WORK_POOL,
    batch_outcome,
    batches,
    deploy_to_undo,
    hosts_down,
    rolling_hosts,
    step_deadline,
    timed_out_step_outcome,
)
from ubertruck_ops.core.text import human_seconds, one_line
from ubertruck_ops.operations.frame import Operation
from ubertruck_ops.operations.release_checks import bake_minutes_for, checks_after_go_live
from ubertruck_ops.tasks import load_balancer, locks, workers

HOST_STEP = "host-release"
# How long a timed-out host step's cancellation is awaited: a worker stops a Running step's process
# (SIGTERM, then its grace) within this; a Scheduled one is Cancelled at once.
CANCEL_CONFIRM_SECONDS = 60


class HostStepFailed(RuntimeError):
    """A host's step did not complete; the message names the host and the step. `reported` is True
    when the step's own run failed (a host's go-live then put the host back itself); `never_ran` when
    it timed out and was confirmed cancelled before it ever ran (nothing changed on the host)."""

    def __init__(self, message: str, reported: bool = False, never_ran: bool = False):
        super().__init__(message)
        self.reported = reported
        self.never_ran = never_ran

    @property
    def kind(self) -> str:
        """How the step failed, as core.fleet.batch_outcome counts it."""
        return SELF_PUT_BACK if self.reported else NEVER_RAN if self.never_ran else MAY_HAVE_RUN


def _deployment(environment: str) -> str:
    return f"{HOST_STEP}/{environment}"


def _run(op: Operation, fleet: AppFleet, host: str, step: str, **parameters) -> None:
    """Run one host step and wait for it; raise HostStepFailed unless it completed.

    The step gets a deadline (`not_after`: when this run stops waiting for it), past which it refuses
    to act whoever starts it; a step not finished in time, or still waiting for a worker that stopped
    polling (for worker_seen_seconds), is cancelled, and its cancellation awaited,
    before the caller decides what to put back: a worker that comes back later must not switch a
    host after the deploy has ended."""
    timeout = fleet.host_run_timeout_seconds
    not_after = step_deadline(datetime.now(UTC), timeout)
    run, abandoned = workers.run_on_host(_deployment(op.environment), fleet.queue(host),
                                         {"environment": op.environment, "host": host, "step": step,
                                          "not_after": not_after, **parameters}, timeout, f"{step} on {host}",
                                         WORK_POOL, fleet.worker_seen_seconds)
    state = run.state
    if state is None or not state.is_final():
        if abandoned:
            waited, why = f"{abandoned} (flow run {run.id})", f"the {op.what} gave up on it: {abandoned}"
        else:
            waited = f"{step} on {host} did not finish within {human_seconds(timeout)} (flow run {run.id})"
            why = f"the {op.what} stopped waiting for it after {human_seconds(timeout)}"
        final, history = workers.cancel_and_confirm(run.id, CANCEL_CONFIRM_SECONDS, why)
        if timed_out_step_outcome(final, history) == NEVER_RAN:
            raise HostStepFailed(f"{waited}; cancelled before it started: nothing changed on {host}", never_ran=True)
        now = "cancelled" if final == "CANCELLED" else f"{final.lower()}, not confirmed cancelled"
        raise HostStepFailed(f"{waited}; it had started and is {now}: {host} counts as possibly changed")
    if not state.is_completed():
        raise HostStepFailed(f"{step} on {host} {state.type.value.lower()}: {state.message or ''} (flow run {run.id})",
                             reported=state.is_failed())


def check_hosts(op: Operation, fleet: AppFleet, skip_hosts: list[str]) -> list[str]:
    """Return the hosts to roll. Raise ValueError naming a host whose worker is down (not skipped)."""
    op.step("check every app host's worker")
    polled = workers.last_polled(WORK_POOL, {h: fleet.queue(h) for h in fleet.hosts})
    down = hosts_down(polled, datetime.now(UTC), timedelta(seconds=fleet.worker_seen_seconds))
    hosts = rolling_hosts(fleet.hosts, down, skip_hosts)
    for host in skip_hosts:
        op.log.warning("skipping app host %s as asked (%s)", host, down.get(host, "its worker is up"))
    return hosts


def build_everywhere(op: Operation, fleet: AppFleet, hosts: list[str], tag: str) -> None:
    """Build `tag` on every host at once. Raise HostStepFailed naming the hosts that failed."""
    op.step(f"build {tag} on {', '.join(hosts)}")
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = {h: pool.submit(contextvars.copy_context().run, _run, op, fleet, h, "build", tag=tag) for h in hosts}
    failed = {h: f.exception() for h, f in futures.items() if f.exception() is not None}
    if failed:
        raise HostStepFailed("; ".join(one_line(e) for e in failed.values()) + "; nothing live was changed")


def migrate_once(op: Operation, fleet: AppFleet, host: str, tag: str) -> None:
    """Apply `tag`'s migrations from the first host, once for the whole deploy (the host backs the
    database up first when there are any)."""
    op.step(f"apply migrations from {host}")
    try:
        _run(op, fleet, host, "migrate", tag=tag)
    except HostStepFailed as exc:
        if exc.never_ran:
            raise
        with op.failure_says(f"no host was switched; the migrate step on {host} ran (or may still run) and may "
                             "have applied migrations: check the migrations table before deploying again"):
            raise


def rolling_deploy(op: Operation, tag: str, skip_hosts: list[str], bake_minutes: float | None = None) -> dict:
    """Deploy `tag` over the environment's app hosts; return what happened. Once every host serves it,
    the smoke URLs and the bake window of the environment's app block are checked; a failure puts every
    host back on what it ran before."""
    fleet = op.env.fleet
    hosts = check_hosts(op, fleet, skip_hosts)
    after_all = None
    if op.env.app is not None:
        after_all = checks_after_go_live(op.env.app, op.env.thresholds, bake_minutes_for(op.env.app, bake_minutes),
                                         op.step)
    with _environment_lock(op, f"rolling deploy of {tag}"):
        return _rolling_deploy(op, fleet, hosts, tag, skip_hosts, after_all)


def _environment_lock(op: Operation, what: str):
    op.step("wait for the deploy lock")
    wait = (op.env.app.deploy_lock_wait_seconds if op.env.app is not None
            else default_of(AppHost, "deploy_lock_wait_seconds"))
    return locks.rolling_lock(op.environment, wait, f"{what}, flow run {flow_run.get_id() or ''}")


def _rolling_deploy(op: Operation, fleet: AppFleet, hosts: list[str], tag: str, skip_hosts: list[str],
                    after_all=None) -> dict:
    op.notify(notices.deploy_started(op.environment, tag, None))
    with op.failure_says("nothing live was changed"):
        build_everywhere(op, fleet, hosts, tag)
        migrate_once(op, fleet, hosts[0], tag)
    with op.failure_says():
        rolled = roll(op, fleet, hosts, "go-live", tag, after_all)
    duration = op.elapsed
    op.publish("deploy-summary", f"rolling deploy {tag}",
               rolling_deploy_summary(tag, rolled["hosts"], rolled["batches"], skip_hosts, duration),
               notices.deploy_succeeded(op.environment, tag, None, duration, [], None))
    return {"status": "deployed", "tag": tag, "hosts": rolled["hosts"], "skipped": skip_hosts,
            "duration_seconds": round(duration, 2)}


def rolling_rollback(op: Operation, to: str | None, skip_hosts: list[str]) -> dict:
    """Roll the environment's app hosts back to `to`. Without `to`, right after a deploy that failed
    having reached some hosts, each host goes back to what it ran before that deploy (hosts it never
    switched, and hosts it put back, stay as they are); otherwise to each host's previous release."""
    fleet = op.env.fleet
    hosts = check_hosts(op, fleet, skip_hosts)
    undo_run = None
    if to is None:
        op.step("find the last deploy or rollback")
        undo_run = deploy_to_undo(*workers.latest_switch_run(op.environment))
        if undo_run:
            op.log.warning("the last deploy (flow run %s) failed after reaching some hosts: each host goes back to "
                           "what it ran before it, not further (run rollback again to go further back)", undo_run)
    with _environment_lock(op, f"rolling rollback to {rolling_rollback_target(to, undo_run)}"):
        return _rolling_rollback(op, fleet, hosts, to, skip_hosts, undo_run)


def _rolling_rollback(op: Operation, fleet: AppFleet, hosts: list[str], to: str | None, skip_hosts: list[str],
                      undo_run: str | None) -> dict:
    with op.failure_says():
        rolled = roll(op, fleet, hosts, "rollback", to, step_parameters={"undo_run": undo_run} if undo_run else None)
    duration = op.elapsed
    op.publish("rollback-summary", f"rolling rollback to {rolling_rollback_target(to, undo_run)}",
               rolling_rollback_summary(to, rolled["hosts"], duration, undo_run),
               notices.rollback_succeeded(op.environment, *rolling_rollback_releases(to, rolled["hosts"], undo_run),
                                          duration))
    return {"status": "rolled-back", "tag": to, "undid": undo_run, "hosts": rolled["hosts"], "skipped": skip_hosts,
            "duration_seconds": round(duration, 2)}


def rolling_reconfigure(op: Operation, skip_hosts: list[str]) -> dict:
    """Give every app host's live release the environment's configuration block, host by host."""
    fleet = op.env.fleet
    hosts = check_hosts(op, fleet, skip_hosts)
    with _environment_lock(op, "rolling reconfigure"):
        with op.failure_says():
            rolled = roll(op, fleet, hosts, "reconfigure", None)
    duration = op.elapsed
    changed = f"hosts with the new configuration: {', '.join(rolled['hosts'])}"
    op.publish("reconfigure-summary", "rolling reconfigure", f"# Reconfigure\n\n{changed}\n",
               notices.reconfigure_succeeded(op.environment, "every host", changed, duration))
    return {"status": "reconfigured", "hosts": rolled["hosts"], "skipped": skip_hosts,
            "duration_seconds": round(duration, 2)}


def roll(op: Operation, fleet: AppFleet, hosts: list[str], step: str, tag: str | None, after_all=None,
         step_parameters: dict | None = None) -> dict:
    """Switch `hosts` batch by batch with host step `step` (go-live or rollback) to `tag` (with
    `step_parameters`, if any, passed to every host's step), each
    deregistered from the balancer while it switches; then run `after_all` (smoke test, bake) once
    every host serves. On a failure put every host that switched (or may have) back on its previous
    release, register every deregistered host again, post what was done to each host, and raise."""
    run_id = str(flow_run.get_id() or "")
    lb = op.env.load_balancer
    switched: list[str] = []             # switched, or may have: put back on a failure
    outcomes: dict[str, str] = {}        # what happened to a host that is not put back
    for batch in batches(hosts, fleet.hosts_at_once):
        deregistered: list[str] = []
        try:
            for host in batch:
                if lb is not None:
                    op.step(f"take {host} out of the load balancer")
                    # Out from the moment deregistering starts: nginx writes `down` and reloads, the ALB
                    # deregisters, before either waits for the drain (which may time out).
                    deregistered.append(host)
                    load_balancer.deregister(lb, host)
            op.step(f"{step} on {', '.join(batch)}")
            failures = _switch_batch(op, fleet, batch, step, tag, run_id, step_parameters or {})
            done, unchanged = batch_outcome(batch, {h: f.kind for h, f in failures.items()}, step)
            switched += done
            outcomes.update(unchanged)
            if failures:
                raise HostStepFailed("; ".join(one_line(e) for e in failures.values()))
            _register(op, lb, deregistered, strict=True)
            if lb is not None and lb.check_urls:
                op.step(f"check {', '.join(batch)} through the load balancer")
                load_balancer.check_through(lb)
            if after_all is not None and batch == batches(hosts, fleet.hosts_at_once)[-1]:
                op.log.info("%s", after_all())
        except Exception as exc:
            failed_at = op.step.current
            releases = {h: outcomes[h] for h in hosts if h in outcomes}
            releases.update(_put_back(op, fleet, switched, run_id))
            balancer = _register(op, lb, deregistered) if lb is not None else None
            untouched = [h for h in hosts if h not in releases and h not in deregistered]
            op.failure_alert(notices.rolling_failed(op.what, op.environment, failed_at, one_line(exc), releases,
                                                    untouched, balancer), exc)
            op.already_reported(exc)
            raise
    return {"hosts": switched, "batches": len(batches(hosts, fleet.hosts_at_once))}


def _switch_batch(op: Operation, fleet: AppFleet, batch: list[str], step: str, tag: str | None,
                  run_id: str, step_parameters: dict) -> dict[str, HostStepFailed]:
    """Run `step` on every host of `batch` at once; return host -> its failure."""
    with ThreadPoolExecutor(max_workers=len(batch)) as pool:
        futures = {h: pool.submit(contextvars.copy_context().run, _run, op, fleet, h, step, tag=tag, run_id=run_id,
                                  **step_parameters) for h in batch}
    failures = {}
    for host, future in futures.items():
        exc = future.exception()
        if exc is not None:
            failures[host] = exc if isinstance(exc, HostStepFailed) else HostStepFailed(f"{step} on {host}: {exc}")
    return failures


def _register(op: Operation, lb, hosts: list[str], strict: bool = False) -> dict[str, str]:
    """Register `hosts` in the balancer again; return host -> notices.BACK_IN or why it is not back.
    With `strict`, raise the first error instead."""
    done = {}
    for host in hosts:
        op.step(f"put {host} back into the load balancer")
        try:
            load_balancer.register(lb, host)
            done[host] = notices.BACK_IN
        except Exception as exc:  # noqa: BLE001 - after a failure every host is tried; the first error stands
            if strict:
                raise
            op.log.error("could not register %s in the load balancer again: %s", host, one_line(exc))
            done[host] = one_line(exc)[:300]
    return done


def _put_back(op: Operation, fleet: AppFleet, switched: list[str], run_id: str) -> dict[str, str]:
    """Put every switched host back on what it ran before this run, newest first; return host -> outcome."""
    outcome = {}
    for host in reversed(switched):
        try:
            _run(op, fleet, host, "put-back", run_id=run_id)
            outcome[host] = "put back"
        except Exception as exc:  # noqa: BLE001 - every host is tried; each outcome is reported
            outcome[host] = f"PUT-BACK FAILED: {one_line(exc)[:200]}"
    return outcome
