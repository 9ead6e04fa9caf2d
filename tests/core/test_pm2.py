"""core/pm2.py: what PM2 runs, judged against the release that should run."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.pm2 import Pm2App, apps_of, batches, restart_counts, running_problems

SERVICES = ["user-service", "fleet-service"]


def app(name: str, service: str, status: str = "online", restarts: int = 0) -> Pm2App:
    return Pm2App(name=name, pm_id=0, service=service, status=status, restarts=restarts, script="", pid=None)


def test_every_service_running_the_release_alone_and_online_is_no_problem():
    apps = [app("user-service@v1.2.0", "user-service"), app("user-service@v1.2.0", "user-service"),
            app("fleet-service@v1.2.0", "fleet-service")]
    assert running_problems(apps, SERVICES, "v1.2.0") == []
    assert restart_counts(apps + [app("fleet-service@v1.2.0", "fleet-service", restarts=2)]) == {
        "user-service@v1.2.0": 0, "fleet-service@v1.2.0": 2}


def test_a_missing_release_an_old_one_beside_it_and_a_restart_since_the_hand_over_are_each_named():
    apps = [app("user-service@v1.1.0", "user-service"), app("user-service@v1.2.0", "user-service", restarts=2),
            app("fleet-service@v1.1.0", "fleet-service")]
    problems = running_problems(apps, SERVICES, "v1.2.0", baseline={"user-service@v1.2.0": 1})
    assert problems == ["user-service: user-service@v1.1.0 still runs beside user-service@v1.2.0",
                        "user-service: user-service@v1.2.0 is online, restarted 1 time(s) since it took over",
                        "fleet-service: PM2 runs no fleet-service@v1.2.0",
                        "fleet-service: fleet-service@v1.1.0 still runs beside fleet-service@v1.2.0"]


def test_without_a_baseline_only_the_status_counts():
    apps = [app("user-service@v1.2.0", "user-service", restarts=5), app("fleet-service@v1.2.0", "fleet-service",
                                                                         "errored")]
    assert running_problems(apps, SERVICES, "v1.2.0") == [
        "fleet-service: fleet-service@v1.2.0 is errored, restarted 0 time(s) since it took over"]


def test_services_are_handed_over_all_at_once_or_in_batches_of_the_blocks_size_in_order():
    services = ["a", "b", "c", "d", "e"]
    assert batches(services, None) == [services]
    assert batches(services, 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert batches(services, 9) == [services]
    assert batches([], None) == []
    with pytest.raises(ValueError, match="at least one service"):
        batches(services, 0)


def test_the_daemons_list_becomes_the_apps_of_our_services_by_namespace_or_by_name():
    items = [{"name": "user-service@v1.2.0", "pm_id": 3, "namespace": "user-service", "status": "online",
              "restarts": 1, "script": "/r/v1.2.0/user-service/dist/main.js", "pid": 42},
             {"name": "fleet-service", "pm_id": "4", "namespace": "default", "status": "stopped", "restarts": 0},
             {"name": "pm2-logrotate", "pm_id": 0, "namespace": "default", "status": "online", "restarts": 0}]
    assert apps_of(items, SERVICES) == [
        Pm2App(name="user-service@v1.2.0", pm_id=3, service="user-service", status="online", restarts=1,
               script="/r/v1.2.0/user-service/dist/main.js", pid=42),
        Pm2App(name="fleet-service", pm_id=4, service="fleet-service", status="stopped", restarts=0, script="",
               pid=None)]
