"""The unit files `ubertruck-ops systemd-units` prints (core/units.py); systemd-analyze verifies
them in tests/test_systemd_units.py."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.units import render, service_units

COMMAND = "/opt/ubertruck-ops/.venv/bin/ubertruck-ops"


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def test_one_app_host_gets_serve_wal_archive_and_watch_each_restarting_private_and_stoppable():
    units = service_units("production", COMMAND, "ubertruck-ops")
    assert [u.name for u in units] == ["ubertruck-ops-serve-production.service",
                                       "ubertruck-ops-wal-archive-production.service",
                                       "ubertruck-ops-watch-production.service"]
    for unit in units:
        lines = lines_of(unit.text)
        assert lines[0] == f"# {unit.name}"
        for wanted in ("Restart=always", "UMask=0077", "User=ubertruck-ops", "KillSignal=SIGTERM", "PrivateTmp=yes",
                       "EnvironmentFile=/etc/ubertruck-ops/production.env"):
            assert wanted in lines, (unit.name, wanted)
        assert any(line.startswith("TimeoutStopSec=") for line in lines)
    serve, archive, watch = (u.text for u in units)
    assert f"ExecStart={COMMAND} serve --environment production" in serve
    assert f"ExecStart={COMMAND} wal-archive --environment production" in archive
    assert f"ExecStart={COMMAND} watch --environment production" in watch
    # serve's flows reload nginx through sudo: no NoNewPrivileges there; the two daemons are hardened
    assert "NoNewPrivileges=yes" not in serve and "NoNewPrivileges=yes" in archive and "ProtectSystem=full" in watch
    assert "After=network-online.target ubertruck-ops-serve-production.service" in watch


def test_several_app_hosts_get_a_worker_per_queue_instead_of_serve():
    units = service_units("production", COMMAND, "deploy", hosts=["web-1", "web-2"])
    names = [u.name for u in units]
    assert names == ["ubertruck-ops-worker-backups-production.service",
                     "ubertruck-ops-worker-app-host-production.service",
                     "ubertruck-ops-worker-app-host-web-1-production.service",
                     "ubertruck-ops-worker-app-host-web-2-production.service",
                     "ubertruck-ops-wal-archive-production.service", "ubertruck-ops-watch-production.service"]
    web2 = units[3].text
    assert ("ExecStart=/opt/ubertruck-ops/.venv/bin/prefect worker start --pool ubertruck-ops --work-queue "
            "app-host-web-2 --type process") in web2
    assert "User=deploy" in web2 and "KillMode=mixed" in web2 and "TimeoutStopSec=7200" in web2


def test_a_fleet_of_one_host_still_gets_workers_its_host_steps_run_on_its_queue():
    names = [u.name for u in service_units("production", COMMAND, hosts=["web-1"])]
    assert "ubertruck-ops-worker-app-host-web-1-production.service" in names
    assert "ubertruck-ops-serve-production.service" not in names


def test_the_printed_text_is_every_unit_in_turn():
    units = service_units("staging", COMMAND)
    text = render(units)
    assert [line for line in text.splitlines() if line.startswith("# ubertruck-ops-")] == [f"# {u.name}" for u in units]


@pytest.mark.parametrize("environment, user, command", [
    ("Prod uction", "ubertruck-ops", COMMAND), ("production", "root;rm", COMMAND),
    ("production", "ubertruck-ops", "/opt/my venv/bin/ubertruck-ops"), ("production", "ubertruck-ops", "relative/x")])
def test_names_and_paths_a_unit_cannot_carry_are_refused(environment, user, command):
    with pytest.raises(ValueError):
        service_units(environment, command, user)
