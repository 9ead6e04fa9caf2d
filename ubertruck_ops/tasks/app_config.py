"""The configuration versions an app host keeps: APP_ROOT/shared/config/<n>.json (0600 in a 0700 folder,
the app user's alone) and `live`, the version the running services have. Written by rename, so a
crash leaves the old file or the new one."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.core.app_config import version_for, versions_to_prune
from ubertruck_ops.log import logger

LIVE = "live"


def config_dir(app: AppHost) -> Path:
    return Path(app.shared_dir) / "config"


def write_private(path: Path, text: str) -> None:
    """Write `path` as a 0600 file by rename (never through a link someone left there). On a failure (a
    full disk) the old file stays as it was and no temporary file is left behind."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", closefd=False) as handle:     # writes it all, or raises
            handle.write(text.encode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temporary.unlink(missing_ok=True)
        raise


def _folder(app: AppHost) -> Path:
    folder = config_dir(app)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)      # a folder made by hand (or an older release) closes too
    return folder


def versions(app: AppHost) -> dict[int, dict[str, str]]:
    """Return the configuration versions kept on the host (number -> variables)."""
    kept = {}
    for path in config_dir(app).glob("*.json"):
        if path.stem.isdigit():
            try:
                kept[int(path.stem)] = json.loads(path.read_text())["values"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # A damaged version is never reused (an equal configuration gets a new number instead).
                logger().warning("configuration version %s is unreadable (%s): not reused", path, type(exc).__name__)
    return kept


def values_of(app: AppHost, version: int) -> dict[str, str]:
    """Return the variables of configuration `version` (0: none). Raise FileNotFoundError naming it
    when the host does not keep it."""
    if version == 0:
        return {}
    path = config_dir(app) / f"{version}.json"
    if not path.is_file():
        raise FileNotFoundError(f"configuration {version} is not kept on the host ({path})")
    try:
        return json.loads(path.read_text())["values"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"configuration {version} on the host is damaged ({path}): run `reconfigure` to write "
                         "the block's variables as a new version") from None


def live_version(app: AppHost) -> int:
    """Return the configuration version the live services run with (0: none yet)."""
    path = config_dir(app) / LIVE
    try:
        return int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return 0
    except ValueError:
        raise ValueError(f"{path} is damaged (it names no configuration version): write the number of the "
                         f"version the services run with (see `pm2 ls`: <service>@<tag>+c<n>) into it") from None


def store(app: AppHost, values: dict[str, str]) -> int:
    """Keep `values` as a configuration version on the host; return its number (an equal version
    already kept is reused)."""
    taken = frozenset(int(p.stem) for p in config_dir(app).glob("*.json") if p.stem.isdigit())
    number, new = version_for(values, versions(app), taken)
    if new:
        write_private(_folder(app) / f"{number}.json", json.dumps({"values": values}, sort_keys=True) + "\n")
    return number


def mark_live(app: AppHost, version: int) -> None:
    """Record that the services now run with configuration `version`."""
    write_private(_folder(app) / LIVE, f"{version}\n")


def prune(app: AppHost, needed: set[int], newest: int) -> list[int]:
    """Delete kept versions no switch can return to (all but `needed` and the `newest`); return them."""
    gone = versions_to_prune(list(versions(app)), needed | {live_version(app)}, newest)
    for number in gone:
        (config_dir(app) / f"{number}.json").unlink(missing_ok=True)
    return gone
