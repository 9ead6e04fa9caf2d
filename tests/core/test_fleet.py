"""core/fleet.py: a rolling deploy refuses a host that is down, rolls in batches, keeps one serving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ubertruck_ops.core.fleet import batches, hosts_down, rolling_hosts

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def test_a_host_whose_worker_has_not_polled_recently_or_ever_is_down():
    polled = {"web-1": NOW - timedelta(seconds=5), "web-2": NOW - timedelta(minutes=10), "web-3": None}
    down = hosts_down(polled, NOW, timedelta(seconds=120))
    assert set(down) == {"web-2", "web-3"}
    assert "600 s ago" in down["web-2"] and "never" in down["web-3"]


def test_a_down_host_refuses_the_deploy_by_name_unless_skipped():
    hosts = ["web-1", "web-2", "web-3"]
    with pytest.raises(ValueError, match=r"web-2: .*app-host-web-2.*skip_hosts=\['web-2'\]"):
        rolling_hosts(hosts, {"web-2": "no worker"}, [])
    assert rolling_hosts(hosts, {"web-2": "no worker"}, ["web-2"]) == ["web-1", "web-3"]
    with pytest.raises(ValueError, match="web-9, not an app host"):
        rolling_hosts(hosts, {}, ["web-9"])
    with pytest.raises(ValueError, match="every app host is skipped"):
        rolling_hosts(["web-1"], {}, ["web-1"])


def test_hosts_roll_in_batches_and_never_all_at_once():
    assert batches(["a", "b", "c"], 1) == [["a"], ["b"], ["c"]]
    assert batches(["a", "b", "c"], 2) == [["a", "b"], ["c"]]
    assert batches(["a", "b", "c"], 5) == [["a", "b"], ["c"]]
    assert batches(["a"], 3) == [["a"]]


def test_a_host_step_started_after_its_deadline_refuses_and_one_in_time_goes_on():
    from ubertruck_ops.core.fleet import StepExpired, refuse_if_expired, step_deadline

    deadline = step_deadline(NOW, 1800)
    assert deadline == "2026-12-02T03:30:00+00:00"
    refuse_if_expired(deadline, NOW + timedelta(minutes=29), "go-live of v1.2.0 on web-2")
    refuse_if_expired(None, NOW + timedelta(days=1), "go-live of v1.2.0 on web-2")      # no deadline given
    with pytest.raises(StepExpired, match=r"go-live of v1.2.0 on web-2 refused: .* 1m 30s later .*nothing was changed"):
        refuse_if_expired(deadline, NOW + timedelta(minutes=31, seconds=30), "go-live of v1.2.0 on web-2")
    with pytest.raises(ValueError, match="no UTC offset"):
        refuse_if_expired("2026-12-02T03:30:00", NOW, "go-live")


def test_a_timed_out_step_counts_as_never_ran_only_when_cancelled_without_ever_running():
    from ubertruck_ops.core.fleet import MAY_HAVE_RUN, NEVER_RAN, timed_out_step_outcome

    assert timed_out_step_outcome("CANCELLED", ["SCHEDULED", "CANCELLED"]) == NEVER_RAN
    assert timed_out_step_outcome("CANCELLED", ["SCHEDULED", "PENDING", "CANCELLING", "CANCELLED"]) == NEVER_RAN
    assert timed_out_step_outcome("CANCELLED", ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING",
                                                "CANCELLED"]) == MAY_HAVE_RUN
    assert timed_out_step_outcome("CANCELLING", ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING"]) == MAY_HAVE_RUN
    assert timed_out_step_outcome("COMPLETED", ["SCHEDULED", "RUNNING", "COMPLETED"]) == MAY_HAVE_RUN
    assert timed_out_step_outcome(None, []) == MAY_HAVE_RUN


def test_a_batch_counts_as_switched_every_host_but_those_that_put_themselves_back_or_never_ran():
    from ubertruck_ops.core.fleet import MAY_HAVE_RUN, NEVER_RAN, SELF_PUT_BACK, batch_outcome

    switched, outcomes = batch_outcome(["web-1", "web-2", "web-3", "web-4"],
                                       {"web-2": SELF_PUT_BACK, "web-3": NEVER_RAN, "web-4": MAY_HAVE_RUN}, "go-live")
    assert switched == ["web-1", "web-4"]          # web-4 crashed or timed out after it started: it may have
    assert outcomes == {"web-2": "its own step failed; it put itself back",
                        "web-3": "its go-live was cancelled before it started; unchanged"}
    assert batch_outcome(["web-1"], {}, "rollback") == (["web-1"], {})


def test_a_rollback_without_a_target_undoes_the_newest_run_only_when_it_is_a_failed_deploy_that_reached_a_host():
    from ubertruck_ops.core.fleet import deploy_to_undo

    assert deploy_to_undo(("run-x", "deploy", "FAILED"), go_live_started=2) == "run-x"
    assert deploy_to_undo(("run-x", "deploy", "CRASHED"), go_live_started=1) == "run-x"
    assert deploy_to_undo(("run-x", "deploy", "CANCELLED"), go_live_started=1) == "run-x"
    # refused before any host went live (a missing tag, a failed build): nothing to undo
    assert deploy_to_undo(("run-x", "deploy", "FAILED"), go_live_started=0) is None
    assert deploy_to_undo(("run-x", "deploy", "COMPLETED"), go_live_started=3) is None
    assert deploy_to_undo(("run-y", "rollback", "FAILED"), go_live_started=0) is None   # a rollback again: further back
    assert deploy_to_undo(None, go_live_started=0) is None


def test_a_step_still_waiting_for_a_worker_that_stopped_polling_is_given_up_and_a_started_one_is_not():
    from ubertruck_ops.core.fleet import abandoned_step

    seen = timedelta(seconds=60)
    gone = NOW - timedelta(seconds=75)
    assert abandoned_step("SCHEDULED", gone, NOW, seen, "go-live on web-2") == (
        "go-live on web-2 was never started: its worker last polled 75 s ago (worker_seen_seconds 60 s)")
    assert abandoned_step("PENDING", None, NOW, seen, "go-live on web-2").startswith(
        "go-live on web-2 was never started: never polled")
    assert abandoned_step("SCHEDULED", NOW - timedelta(seconds=5), NOW, seen, "go-live on web-2") is None
    # once it runs, its process may be switching the host whatever became of its worker: wait for it
    assert abandoned_step("RUNNING", gone, NOW, seen, "go-live on web-2") is None
    assert abandoned_step(None, gone, NOW, seen, "go-live on web-2") is None
