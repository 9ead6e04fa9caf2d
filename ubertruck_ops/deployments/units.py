"""`ubertruck-ops systemd-units`: the unit files of this installation (core/units.py builds them)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ubertruck_ops.core.units import Unit, render, service_units

COMMAND = "ubertruck-ops"


def installed_command() -> str:
    """Return the absolute path of the `ubertruck-ops` console script of this installation: the one
    beside the running interpreter (a venv's bin folder; not resolved, so the venv's python runs it),
    else the one this process was started as, else the first on PATH. Raise ValueError without one."""
    candidates = [Path(os.path.abspath(sys.executable)).parent / COMMAND]
    if Path(sys.argv[0]).name == COMMAND:
        candidates.append(Path(os.path.abspath(sys.argv[0])))
    found = shutil.which(COMMAND)
    if found:
        candidates.append(Path(os.path.abspath(found)))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ValueError(f"no installed {COMMAND} command found beside {sys.executable} or on PATH: install the "
                     "project (pip install .) into the environment the services will use, and run this from it")


def fleet_hosts(environment: str) -> list[str]:
    """The app hosts of `environment`'s fleet block (APP_HOSTS at blocks init), or [] without one."""
    from ubertruck_ops.blocks.environment import block_name
    from ubertruck_ops.blocks.fleet import AppFleet

    try:
        return list(AppFleet.load(block_name(environment, "fleet")).hosts)
    except ValueError:          # no such block: a single app host
        return []


def units_of(environment: str, user: str) -> list[Unit]:
    command = installed_command()
    return service_units(environment, command, user, fleet_hosts(environment),
                         prefect=str(Path(command).parent / "prefect"))


def print_units(environment: str, user: str, directory: str | None = None) -> int:
    """Print the units (or write each into `directory`, 0644 as systemd expects); return 0."""
    units = units_of(environment, user)
    if directory is None:
        print(render(units), end="")
        return 0
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for unit in units:
        path = folder / unit.name
        path.write_text(unit.text)
        path.chmod(0o644)       # unit files hold no secret (the environment file does)
        print(f"wrote {path}")
    return 0
