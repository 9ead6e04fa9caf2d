"""The load-balancer step's decisions: the upstream file, ALB targets and health."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.load_balancer import (
    LastServingHost,
    TargetHealth,
    alb_targets,
    deregistered_verdict,
    down_hosts,
    healthy_verdict,
    host_states,
    refuse_last_target,
    render_upstreams,
)

UPSTREAMS = {"user-service": {"app-1": "10.0.1.11:3001", "app-2": "10.0.1.12:3001"},
             "fleet-service": {"app-1": "10.0.1.11:3002", "app-2": "10.0.1.12:3002"}}


def test_the_upstream_file_marks_the_host_taken_out_down_in_every_upstream():
    text = render_upstreams(UPSTREAMS, {"app-2"}, ["keepalive 32"])
    assert "upstream user-service {\n    keepalive 32;\n    server 10.0.1.11:3001;  # app-1\n" \
           "    server 10.0.1.12:3001 down;  # app-2\n}" in text
    assert "server 10.0.1.12:3002 down;" in text and "server 10.0.1.11:3002;" in text


def test_the_file_read_back_says_which_hosts_are_down():
    assert down_hosts(render_upstreams(UPSTREAMS, {"app-1"}), UPSTREAMS) == {"app-1"}
    assert down_hosts(render_upstreams(UPSTREAMS, set()), UPSTREAMS) == set()


def test_a_host_down_in_one_upstream_only_counts_as_down():
    text = "upstream user-service {\n server 10.0.1.11:3001 down;\n server 10.0.1.12:3001;\n}\n"
    assert down_hosts(text, UPSTREAMS) == {"app-1"}


def test_the_last_serving_host_cannot_be_taken_out():
    with pytest.raises(LastServingHost, match="user-service would have no server left up"):
        render_upstreams(UPSTREAMS, {"app-1", "app-2"})
    with pytest.raises(LastServingHost):
        render_upstreams({"web": {"app-1": "10.0.1.11:80"}}, {"app-1"})


def test_an_unknown_host_or_a_malformed_server_or_directive_is_refused():
    with pytest.raises(ValueError, match="app-9"):
        render_upstreams(UPSTREAMS, {"app-9"})
    with pytest.raises(ValueError, match="address:port"):
        render_upstreams({"web": {"app-1": "10.0.1.11:80; server evil:1"}}, set())
    with pytest.raises(ValueError, match="refused"):
        render_upstreams(UPSTREAMS, set(), ["keepalive 2; } server evil:1"])
    with pytest.raises(ValueError, match="upstream name"):
        render_upstreams({"web {": {"app-1": "10.0.1.11:80"}}, set())


def test_alb_targets_are_instance_ids_or_addresses_with_optional_ports():
    assert alb_targets("i-0abc") == [{"Id": "i-0abc"}]
    assert alb_targets("10.0.1.11:3000+10.0.1.11:3001") == [{"Id": "10.0.1.11", "Port": 3000},
                                                              {"Id": "10.0.1.11", "Port": 3001}]
    with pytest.raises(ValueError):
        alb_targets("i-0abc:http")


def test_taking_out_the_last_healthy_target_is_refused():
    health = [TargetHealth("i-1", 80, "healthy"), TargetHealth("i-2", 80, "unhealthy", "Target.FailedHealthChecks")]
    with pytest.raises(LastServingHost, match="i-2:80 unhealthy"):
        refuse_last_target(health, [{"Id": "i-1"}])
    refuse_last_target(health, [{"Id": "i-2"}])


def test_deregistration_is_done_when_every_target_is_unused():
    assert deregistered_verdict([TargetHealth("i-1", 80, "draining", "Target.DeregistrationInProgress")])[0] == "wait"
    assert deregistered_verdict([TargetHealth("i-1", 80, "unused", "Target.NotRegistered")])[0] == "done"
    assert deregistered_verdict([])[0] == "done"


def test_registration_is_done_when_healthy_and_fails_fast_on_a_stopped_instance():
    assert healthy_verdict([TargetHealth("i-1", 80, "initial", "Elb.RegistrationInProgress")], 1)[0] == "wait"
    assert healthy_verdict([TargetHealth("i-1", 80, "healthy")], 1)[0] == "done"
    assert healthy_verdict([TargetHealth("i-1", 80, "unavailable", "Target.HealthCheckDisabled")], 1)[0] == "done"
    assert healthy_verdict([TargetHealth("i-1", 80, "healthy")], 2)[0] == "wait"
    assert healthy_verdict([TargetHealth("i-1", 80, "unused", "Target.InvalidState")], 1)[0] == "failed"


def test_host_states_say_in_out_or_what_the_targets_are_doing():
    health = [TargetHealth("i-1", 80, "healthy"), TargetHealth("i-3", 80, "draining")]
    hosts = {"app-1": [{"Id": "i-1"}], "app-2": [{"Id": "i-2"}], "app-3": [{"Id": "i-3"}]}
    assert host_states(hosts, health) == {"app-1": "in", "app-2": "out", "app-3": "draining"}
