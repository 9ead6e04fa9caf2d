"""A fleet from the env file alone: per-host app settings and upstream ports, the worker and step
timings, saved by `blocks init` as the deploy reads them."""

from __future__ import annotations

import pytest

from ubertruck_ops.blocks.environment import load_environment, load_host_app
from ubertruck_ops.deployments.setup import blocks_init

from tests.helpers import new_env_name


def fleet_variables(tmp_path) -> dict[str, str]:
    return {"DATABASE_URL": "postgresql://app:secret@db.internal:5432/ubertruck_prod",
            "BACKUP_ENCRYPTION_KEY": "k" * 32, "BACKUP_REPOSITORY": str(tmp_path / "repo"),
            "APP_ROOT": "/opt/ubertruck", "APP_SERVICES": "user-service:3001,fleet-service:3002",
            "APP_HOSTS": "web-1,web-2,web-3", "WORKER_SEEN_SECONDS": "30", "HOST_RUN_TIMEOUT_SECONDS": "600",
            "APP_ROOT_WEB_2": "/srv/web-2", "APP_SERVICES_WEB_2": "user-service:4001,fleet-service:4002",
            "PM2_HOME_WEB_2": "/srv/web-2/pm2", "LB_KIND": "nginx",
            "LB_HOSTS": "web-1=127.0.0.1,web-2=127.0.0.1,web-3=10.0.1.13"}


def test_blocks_init_saves_each_hosts_own_settings_ports_and_the_fleet_timings_from_the_env_file(tmp_path):
    name = new_env_name()
    saved = blocks_init(name, variables=fleet_variables(tmp_path))
    assert f"ubertruck-app-host/{name}-app-web-2" in saved and f"ubertruck-app-host/{name}-app-web-1" not in saved

    web2, web1 = load_host_app(name, "web-2"), load_host_app(name, "web-1")
    assert (web2.app_root, web2.services, web2.pm2_home) == ("/srv/web-2", {"user-service": 4001, "fleet-service": 4002},
                                                             "/srv/web-2/pm2")
    assert (web1.app_root, web1.services) == ("/opt/ubertruck", {"user-service": 3001, "fleet-service": 3002})
    env = load_environment(name)
    assert (env.fleet.worker_seen_seconds, env.fleet.host_run_timeout_seconds) == (30, 600)
    assert env.load_balancer.upstreams["user-service"] == {"web-1": "127.0.0.1:3001", "web-2": "127.0.0.1:4001",
                                                           "web-3": "10.0.1.13:3001"}


def test_a_bad_per_host_setting_is_refused_naming_its_variable(tmp_path):
    variables = fleet_variables(tmp_path) | {"APP_SERVICES_WEB_2": "user-service:99999"}
    with pytest.raises(ValueError, match="APP_SERVICES_WEB_2 item 'user-service:99999'"):
        blocks_init(new_env_name(), variables=variables)
    with pytest.raises(ValueError, match="WORKER_SEEN_SECONDS"):
        blocks_init(new_env_name(), variables=fleet_variables(tmp_path) | {"WORKER_SEEN_SECONDS": "-1"})
