"""The release switch, written once: what deploy, rollback and a rolling deploy's host steps share.

    with locked_switch(app, f"deploy of {tag}") as live:       # the host lock, then what is live
        plan = deploy_plan(tag, live.release, live.history, live.available)
        if already_live(app, plan):
            return ...
        ...                                                    # build, migrate: nothing live changes
        switched = switch_release(op, app, plan, run_id)       # raises SwitchFailed

`switch_release` records *started* in the host's history, goes live (switch, hand-over, health
gate, frontend) and saves PM2's list; on a failure it puts the plan's previous release back (still
under the caller's lock: nothing else may switch the host in between), records the outcome and
raises SwitchFailed carrying the error and what it put back. What to switch and what to put back
are decided in core/releases.py; what to tell is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect.runtime import flow_run

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.app_config import AppConfiguration
from ubertruck_ops.core.fleet import refuse_if_expired
from ubertruck_ops.core.limits import DEPLOY_LOCK, DEPLOY_LOCK_LEASE_SECONDS
from ubertruck_ops.core.releases import HistoryEntry, PutBack, SwitchPlan, put_back_plan
from ubertruck_ops.core.text import one_line
from ubertruck_ops.operations.frame import Operation
from ubertruck_ops.operations.go_live import go_live, is_serving
from ubertruck_ops.tasks import app_config, pm2, release
from ubertruck_ops.tasks.locks import flock_only, host_lock


@dataclass(frozen=True)
class Live:
    """The host as the lock holder found it: the live release, its history, the releases on it, and
    the configuration version the live services run with."""

    release: str | None
    history: list[HistoryEntry]
    available: list[str]
    config: int = 0


@dataclass(frozen=True)
class Switched:
    """What a switch did: `plan.tag` is live, replacing `plan.live`."""

    plan: SwitchPlan


class SwitchFailed(RuntimeError):
    """Going live failed. `error` is why; `put_back` what was put back live (None: nothing, there was
    no complete previous release or the plan puts nothing back); `put_back_error` why putting it
    back failed too (None: it is serving again). `failed_at` and `put_back_failed_at` name the steps."""

    def __init__(self, error: Exception, failed_at: str, put_back: PutBack | None = None,
                 put_back_error: Exception | None = None, put_back_failed_at: str | None = None):
        if put_back is None:
            outcome = "nothing was put back"
        elif put_back_error is None:
            outcome = f"{put_back.release} was put back live"
        else:
            outcome = f"putting {put_back.release} back ALSO FAILED: {one_line(put_back_error)}"
        super().__init__(f"{one_line(error)}; {outcome}")
        self.error, self.failed_at = error, failed_at
        self.put_back, self.put_back_error, self.put_back_failed_at = put_back, put_back_error, put_back_failed_at


@contextmanager
def locked_switch(app: AppHost, what: str, slot: bool = True, not_after: str | None = None) -> Iterator[Live]:
    """Hold the host's deploy lock for `what` ("deploy of v1.2.0") and yield what is live once it is
    held. With `slot`, also the environment's deploy slot (a single-host deploy or rollback); without,
    the lock file only (a rolling run's host step: the parent run holds the slot, so the hosts of one
    batch switch at once). Raise StepExpired when the lock came after `not_after`, TimeoutError when
    it did not come within the block's wait."""
    release.prepare_host(app)
    holder = f"{what}, flow run {flow_run.get_id() or ''}"
    if slot:
        lock = host_lock(app.shared_dir, DEPLOY_LOCK, app.deploy_lock_wait_seconds, DEPLOY_LOCK_LEASE_SECONDS,
                         holder=holder)
    else:
        lock = flock_only(app.shared_dir, DEPLOY_LOCK, app.deploy_lock_wait_seconds, holder=holder)
    with lock:
        # Waiting for the lock may have outlasted a rolling deploy's patience: look again.
        refuse_if_expired(not_after, datetime.now(UTC), what)
        yield Live(release.live_release(app), release.read_history(app), release.releases(app),
                   app_config.live_version(app))


def configuration_to_run(app: AppHost, config: AppConfiguration | None, live: Live) -> int:
    """Return the configuration version a deploy goes live with: the block's variables, kept on the
    host as a version (an equal one is reused), or the live version when the environment has no
    configuration block (nothing to change)."""
    if config is None:
        return live.config
    return app_config.store(app, config.variables())


def already_live(app: AppHost, plan: SwitchPlan) -> bool:
    """Return True when the plan's release is live and serving: the switch has nothing to do."""
    return plan.tag == plan.live and plan.config == plan.live_config and is_serving(app, plan.tag, plan.config)


def switch_release(op: Operation, app: AppHost, plan: SwitchPlan, run_id: str, detail: str = "",
                   on_service: Callable[[int, int], None] | None = None,
                   after_go_live: Callable[[], str] | None = None) -> Switched:
    """Put `plan.tag` live on the host (the caller holds locked_switch), recording the switch in the
    host's history under flow run `run_id` (`detail` on its success). `after_go_live`: what must pass
    once it is live (smoke test, bake window); it returns what it saw. Raise SwitchFailed after putting
    the plan's previous release back when going live, saving PM2's list or that check fails."""
    configs = {"config": plan.config, "from_config": plan.live_config}
    release.record(app, plan.action, plan.from_release, plan.tag, "started", run_id, **configs)
    try:
        go_live(app, plan.tag, op.step, on_service=on_service, config=plan.config)
        op.step("save the PM2 process list")
        pm2.save(app)
        if after_go_live is not None:
            checked = after_go_live()
            op.log.info("%s", checked)
            detail = "; ".join(filter(None, [detail, checked]))
    except Exception as exc:
        raise _put_back(op, app, plan, exc, run_id) from exc
    app_config.mark_live(app, plan.config)
    release.record(app, plan.action, plan.from_release, plan.tag, "succeeded", run_id, detail=detail, **configs)
    return Switched(plan)


def _put_back(op: Operation, app: AppHost, plan: SwitchPlan, exc: Exception, run_id: str) -> SwitchFailed:
    """After `exc` past the switch: put the plan's previous release back live, record what happened,
    and return the SwitchFailed that says it."""
    failed_at, error = op.step.current, one_line(exc)
    back = put_back_plan(plan, plan.put_back is not None and release.is_complete(app, plan.put_back))
    configs = {"config": plan.config, "from_config": plan.live_config}
    if back is None:
        release.record(app, plan.action, plan.from_release, plan.tag, "failed", run_id, detail=error, **configs)
        return SwitchFailed(exc, failed_at)
    op.log.error("%s of %s failed at '%s': %s; putting %s back", plan.action, plan.tag, failed_at, error,
                 back.release)
    back_configs = {"config": back.config, "from_config": plan.config}
    try:
        go_live(app, back.release, op.step, config=back.config)
        pm2.save(app)
    except Exception as again:  # noqa: BLE001 - both are reported; the original failure is what the run raises
        release.record(app, back.action, plan.tag, back.release, "failed", run_id, detail=one_line(again),
                       **back_configs)
        return SwitchFailed(exc, failed_at, back, again, op.step.current)
    app_config.mark_live(app, back.config)
    release.record(app, back.action, plan.tag, back.release, "succeeded", run_id, detail=error, **back_configs)
    return SwitchFailed(exc, failed_at, back)
