"""core/releases.py: tags, previous release, pruning, gates, migrations, the ecosystem."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.releases import (
    HistoryEntry,
    Probe,
    app_name,
    check_tag,
    ecosystem_apps,
    judge_gate,
    pending_migrations,
    previous_release,
    releases_to_prune,
    service_of,
)


def entry(action, frm, to, outcome):
    return HistoryEntry(at="2026-11-24T10:00:00Z", action=action, from_release=frm, to_release=to, outcome=outcome)


@pytest.mark.parametrize("tag", ["v1.0.0", "v1.10.0", "v2.0.0-rc.1"])
def test_release_tags_are_accepted(tag):
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["1.10", 1.1, "v1.0", "v1.0.0/../../etc", "main", "", None, "v1.0.0 "])
def test_anything_else_is_refused_with_the_expected_form(tag):
    with pytest.raises(ValueError, match="vMAJOR.MINOR.PATCH"):
        check_tag(tag)


def test_previous_release_is_what_was_live_before_even_after_an_interrupted_switch():
    history = [entry("deploy", None, "v1.0.0", "started"), entry("deploy", None, "v1.0.0", "succeeded"),
               entry("deploy", "v1.0.0", "v1.1.0", "started"), entry("deploy", "v1.0.0", "v1.1.0", "succeeded"),
               entry("deploy", "v1.1.0", "v1.2.0", "started")]       # killed after the switch
    available = ["v1.0.0", "v1.1.0", "v1.2.0"]
    assert previous_release(history, "v1.2.0", available) == "v1.1.0"
    assert previous_release(history, "v1.1.0", available) == "v1.0.0"
    # a rollback makes the release it left the previous one: rolling back twice toggles
    history.append(entry("rollback", "v1.2.0", "v1.1.0", "succeeded"))
    assert previous_release(history, "v1.1.0", available) == "v1.2.0"
    # a deploy that failed and came back by itself is never the rollback target
    history += [entry("deploy", "v1.1.0", "v1.3.0", "started"), entry("auto-rollback", "v1.3.0", "v1.1.0", "succeeded")]
    assert previous_release(history, "v1.1.0", available + ["v1.3.0"]) == "v1.2.0"


def test_a_redeploy_of_the_live_tag_does_not_hide_what_was_live_before_it():
    history = [entry("deploy", "v1.0.0", "v1.1.0", "succeeded"), entry("deploy", "v1.1.0", "v1.1.0", "succeeded")]
    assert previous_release(history, "v1.1.0", ["v1.0.0", "v1.1.0"]) == "v1.0.0"


def test_previous_release_falls_back_to_the_newest_other_release_only_without_history():
    assert previous_release([], "v1.2.0", ["v1.0.0", "v1.1.0", "v1.2.0"]) == "v1.1.0"
    # the history knows: v1.2.0 came from a release no longer on the host, or from nothing
    assert previous_release([entry("deploy", "v0.9.0", "v1.2.0", "succeeded")], "v1.2.0", ["v1.1.0", "v1.2.0"]) is None
    assert previous_release([entry("deploy", None, "v1.2.0", "succeeded")], "v1.2.0", ["v1.1.0", "v1.2.0"]) is None
    assert previous_release([], "v1.0.0", ["v1.0.0"]) is None
    assert previous_release([], None, []) is None


def test_pruning_keeps_the_newest_and_never_the_live_or_previous_release():
    releases = [f"v1.{i}.0" for i in range(8)]
    assert releases_to_prune(releases, "v1.7.0", "v1.6.0", 5) == ["v1.0.0", "v1.1.0", "v1.2.0"]
    # rolled back to an old release: it and the one it replaced stay whatever their age
    assert releases_to_prune(releases, "v1.0.0", "v1.7.0", 5) == ["v1.1.0", "v1.2.0"]
    assert releases_to_prune(releases, "v1.1.0", "v1.0.0", 2) == [f"v1.{i}.0" for i in range(2, 6)]
    for keep in range(0, 10):
        pruned = releases_to_prune(releases, "v1.3.0", "v1.2.0", keep)
        assert "v1.3.0" not in pruned and "v1.2.0" not in pruned


def test_the_health_gate_names_every_failing_check():
    good = Probe("user-service", health=200, version="v1.1.0", ready=200, live=200)
    assert judge_gate([good], "v1.1.0").passed
    verdict = judge_gate([
        good,
        Probe("fleet-service", health=200, version="v1.0.0", ready=200, live=200),
        Probe("booking-service", error="ConnectError: refused"),
        Probe("payment-service", health=200, version="v1.1.0", ready=503, live=200),
        Probe("admin-service", health=500, version=None, ready=200, live=None),
    ], "v1.1.0")
    assert not verdict.passed
    text = "\n".join(verdict.problems)
    assert "fleet-service: reports version 'v1.0.0', expected 'v1.1.0'" in text
    assert "booking-service: no answer (ConnectError: refused)" in text
    assert "payment-service: /health/ready answered 503" in text
    assert "admin-service: /health answered 500" in text and "admin-service: /health/live answered None" in text
    assert "user-service" not in text


def test_pending_migrations_are_the_unapplied_ones_in_name_order():
    files = ["002_b.sql", "001_a.sql", "003_c.sql"]
    assert pending_migrations(files, set()) == ["001_a.sql", "002_b.sql", "003_c.sql"]
    assert pending_migrations(files, {"001_a.sql", "002_b.sql"}) == ["003_c.sql"]
    assert pending_migrations(files, set(files)) == []


def test_pm2_runs_each_release_from_its_real_folder_under_its_own_name():
    apps = ecosystem_apps({"user-service": 3001, "fleet-service": 3002}, "v1.1.0", "/opt/ubertruck/releases/v1.1.0",
                          "/var/log/ubertruck", instances=2)
    assert [a["name"] for a in apps] == ["user-service@v1.1.0", "fleet-service@v1.1.0"]
    assert apps[0]["script"] == "/opt/ubertruck/releases/v1.1.0/user-service/dist/main.js"
    assert all("current" not in a["script"] and "current" not in a["cwd"] for a in apps)
    assert apps[1]["env"]["PORT"] == "3002" and apps[0]["exec_mode"] == "cluster" and apps[0]["instances"] == 2
    assert apps[0]["wait_ready"] and apps[0]["error_file"] == "/var/log/ubertruck/user-service-error.log"
    assert service_of(app_name("user-service", "v1.1.0")) == "user-service"


def test_a_failed_deploy_puts_back_what_was_live_or_on_a_redeploy_what_was_live_before():
    from ubertruck_ops.core.releases import release_to_put_back

    history = [entry("deploy", "v1.0.0", "v1.1.0", "succeeded")]
    available = ["v1.0.0", "v1.1.0", "v1.2.0"]
    assert release_to_put_back("v1.2.0", "v1.1.0", history, available) == "v1.1.0"
    assert release_to_put_back("v1.1.0", "v1.1.0", history, available) == "v1.0.0"
    assert release_to_put_back("v1.0.0", None, [], ["v1.0.0"]) is None


def test_rollback_goes_to_the_previous_or_the_named_release_and_refuses_one_not_on_the_host():
    from ubertruck_ops.core.releases import rollback_target

    history = [entry("deploy", "v1.0.0", "v1.1.0", "succeeded")]
    assert rollback_target(None, history, "v1.1.0", ["v1.0.0", "v1.1.0"]) == "v1.0.0"
    assert rollback_target("v1.1.0", history, "v1.1.0", ["v1.0.0", "v1.1.0"]) == "v1.1.0"
    with pytest.raises(ValueError, match="no earlier release on the host to roll back to"):
        rollback_target(None, [], "v1.0.0", ["v1.0.0"])
    with pytest.raises(ValueError, match=r"v0\.9\.0 is not on the host .*--param tag=v0\.9\.0"):
        rollback_target("v0.9.0", history, "v1.1.0", ["v1.0.0", "v1.1.0"])


def test_tags_sort_by_version_not_by_text():
    from ubertruck_ops.core.releases import version_key

    assert sorted(["v1.10.0", "v1.9.0", "v1.2.0-rc.1", "v2.0.0"], key=version_key) == \
        ["v1.2.0-rc.1", "v1.9.0", "v1.10.0", "v2.0.0"]


def test_a_rolling_deploy_puts_each_switched_host_back_on_what_it_ran_before_that_run():
    from ubertruck_ops.core.releases import HistoryEntry, put_back_for_run

    history = [HistoryEntry("t1", "deploy", None, "v1.0.0", "succeeded", "run-a"),
               HistoryEntry("t2", "deploy", "v1.0.0", "v1.1.0", "started", "run-b"),
               HistoryEntry("t3", "deploy", "v1.0.0", "v1.1.0", "succeeded", "run-b"),
               HistoryEntry("t4", "rollback", "v1.1.0", "v1.0.0", "started", "run-c")]
    assert put_back_for_run(history, "run-b") == ("v1.0.0", 0)
    assert put_back_for_run(history, "run-c") == ("v1.1.0", 0)
    assert put_back_for_run(history, "run-a") is None          # nothing was live before the first deploy
    assert put_back_for_run(history, "run-never-here") is None


def test_a_deploy_plan_records_and_puts_back_what_was_live_or_on_a_redeploy_what_was_live_before():
    from ubertruck_ops.core.releases import SwitchPlan, deploy_plan

    history = [entry("deploy", "v1.0.0", "v1.1.0", "succeeded")]
    available = ["v1.0.0", "v1.1.0", "v1.2.0"]
    assert deploy_plan("v1.2.0", "v1.1.0", history, available) == SwitchPlan("deploy", "v1.2.0", "v1.1.0", "v1.1.0",
                                                                             "v1.1.0")
    assert deploy_plan("v1.1.0", "v1.1.0", history, available).put_back == "v1.0.0"
    assert deploy_plan("v1.0.0", None, [], ["v1.0.0"]).put_back is None
    assert deploy_plan("v1.0.0", "v1.1.0", history, available, action="rollback").action == "rollback"


def test_a_single_host_rollback_plan_goes_from_the_live_release_and_puts_nothing_back():
    from ubertruck_ops.core.releases import SwitchPlan, rollback_plan

    history = [entry("deploy", "v1.0.0", "v1.1.0", "succeeded")]
    assert rollback_plan(None, "v1.1.0", history, ["v1.0.0", "v1.1.0"]) == SwitchPlan("rollback", "v1.0.0", "v1.1.0",
                                                                                      "v1.1.0", None)
    with pytest.raises(ValueError, match="no earlier release"):
        rollback_plan(None, "v1.0.0", [], ["v1.0.0"])


def test_a_host_put_back_plan_goes_to_what_ran_before_the_run_and_exists_only_when_something_did():
    from ubertruck_ops.core.releases import SwitchPlan, host_put_back_plan

    assert host_put_back_plan(("v1.0.0", 0), "v1.1.0") == SwitchPlan("put-back", "v1.0.0", "v1.1.0", "v1.1.0", None)
    # with the configuration it ran: version 2, while version 3 is live
    assert host_put_back_plan(("v1.0.0", 2), "v1.1.0", 3) == SwitchPlan("put-back", "v1.0.0", "v1.1.0", "v1.1.0", None,
                                                                        2, 3)
    assert host_put_back_plan(None, "v1.1.0") is None


def test_a_failed_switch_puts_back_only_a_complete_previous_release_named_by_what_failed():
    from ubertruck_ops.core.releases import PutBack, SwitchPlan, put_back_plan

    deploy = SwitchPlan("deploy", "v1.2.0", "v1.1.0", "v1.1.0", "v1.1.0")
    assert put_back_plan(deploy, complete=True) == PutBack("v1.1.0", "auto-rollback")
    assert put_back_plan(deploy, complete=False) is None                  # a half-built release would fail too
    rolling_back = SwitchPlan("rollback", "v1.0.0", "v1.1.0", "v1.1.0", "v1.1.0")
    assert put_back_plan(rolling_back, complete=True) == PutBack("v1.1.0", "auto-put-back")
    assert put_back_plan(SwitchPlan("deploy", "v1.0.0", None, None, None), complete=True) is None


def test_a_tag_missing_from_the_repository_is_refused_naming_the_newest_tags_and_the_host():
    from ubertruck_ops.core.releases import missing_tag

    tags = {"v1.9.0": "a", "v1.10.0": "b", "v1.2.0": "c"}
    assert missing_tag("v1.10.0", tags, "git@example:app.git") is None
    assert missing_tag("v9.9.9", tags, "/srv/app.git") == ("tag v9.9.9 does not exist in /srv/app.git (newest tags: "
                                                           "v1.2.0, v1.9.0, v1.10.0); nothing was changed")
    assert missing_tag("v9.9.9", {}, "/srv/app.git", host="web-2").endswith("(newest tags: none); nothing was changed "
                                                                              "on web-2")


def test_a_rolling_reconfigure_puts_each_host_back_on_the_configuration_it_ran_before_that_run():
    from ubertruck_ops.core.releases import HistoryEntry, put_back_for_run

    history = [HistoryEntry("t1", "deploy", None, "v1.0.0", "succeeded", "run-a", config=1),
               HistoryEntry("t2", "reconfigure", "v1.0.0", "v1.0.0", "started", "run-b", config=2, from_config=1),
               HistoryEntry("t3", "deploy", "v1.0.0", "v1.0.0", "started", "run-c", config=2, from_config=2)]
    assert put_back_for_run(history, "run-b") == ("v1.0.0", 1)
    assert put_back_for_run(history, "run-c") is None        # nothing changed: nothing to put back


def test_a_reconfigure_plan_keeps_the_live_release_and_puts_the_live_configuration_back():
    from ubertruck_ops.core.releases import PutBack, put_back_plan, reconfigure_plan

    plan = reconfigure_plan("v1.2.0", 3, 4)
    assert (plan.action, plan.tag, plan.config, plan.put_back, plan.live_config) == ("reconfigure", "v1.2.0", 4,
                                                                                     "v1.2.0", 3)
    assert put_back_plan(plan, True) == PutBack("v1.2.0", "auto-put-back", 3)
    with pytest.raises(ValueError, match="no release is live"):
        reconfigure_plan(None, 0, 1)


def test_a_deploy_goes_live_with_the_new_configuration_and_a_failure_puts_back_the_live_one():
    from ubertruck_ops.core.releases import PutBack, deploy_plan, put_back_plan, rollback_plan

    plan = deploy_plan("v1.2.0", "v1.1.0", [], ["v1.1.0", "v1.2.0"], config=5, live_config=4)
    assert (plan.config, plan.live_config) == (5, 4)
    assert put_back_plan(plan, True) == PutBack("v1.1.0", "auto-rollback", 4)
    # a rollback keeps the configuration that is live: it never brings an old secret back
    back = rollback_plan(None, "v1.2.0", [], ["v1.1.0", "v1.2.0"], live_config=5)
    assert (back.tag, back.config) == ("v1.1.0", 5)


def test_pm2_names_say_the_release_and_the_configuration_version():
    from ubertruck_ops.core.releases import app_name, service_of

    assert app_name("user-service", "v1.2.0") == "user-service@v1.2.0"
    assert app_name("user-service", "v1.2.0", 3) == "user-service@v1.2.0+c3"
    assert service_of("user-service@v1.2.0+c3") == "user-service"


def test_undoing_a_failed_rolling_deploy_takes_each_host_to_what_it_ran_before_it_and_no_further():
    from ubertruck_ops.core.releases import HistoryEntry, SwitchPlan, undo_plan

    before = [HistoryEntry("t1", "deploy", None, "v1.0.0", "succeeded", "run-a"),
              HistoryEntry("t2", "deploy", "v1.0.0", "v1.1.0", "succeeded", "run-b", config=2, from_config=1)]
    switched_and_stuck = [*before, HistoryEntry("t3", "deploy", "v1.1.0", "v1.2.0", "succeeded", "run-x", config=3,
                                                from_config=2)]
    # its put-back failed: it goes back to v1.1.0 with the configuration v1.1.0 ran with
    assert undo_plan("run-x", "v1.2.0", switched_and_stuck, 3) == SwitchPlan("rollback", "v1.1.0", "v1.2.0", "v1.2.0",
                                                                             "v1.2.0", 2, 3)
    put_back = [*switched_and_stuck, HistoryEntry("t4", "put-back", "v1.2.0", "v1.1.0", "succeeded", "run-x", config=2,
                                                  from_config=3)]
    assert undo_plan("run-x", "v1.1.0", put_back, 2).tag == "v1.1.0"          # already back: nothing to do
    assert undo_plan("run-x", "v1.1.0", before, 2) == SwitchPlan("rollback", "v1.1.0", "v1.1.0", "v1.1.0", "v1.1.0",
                                                                 2, 2)         # never reached: stays, not v1.0.0
    with pytest.raises(ValueError, match="nothing to roll back to"):
        undo_plan("run-x", None, [], 0)
