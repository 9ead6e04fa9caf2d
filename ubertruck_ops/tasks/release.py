"""The application host's release folders: releases/<tag>, the `current` symlink, the PM2
ecosystem file, the web root symlink and the deploy history.

Every change that operators or PM2 can observe is a rename, so it is atomic: a crash
leaves either the old state or the new one, never half of each.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.core.releases import HistoryEntry, ecosystem_apps
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import app_config

MARKER = ".ubertruck-release.json"    # written last: a release folder without it is incomplete
HISTORY = "deploy-history.jsonl"


def release_dir(app: AppHost, tag: str) -> Path:
    return Path(app.releases_dir) / tag


def prepare_host(app: AppHost) -> None:
    """Create the host's folders where missing."""
    for folder in (app.releases_dir, app.shared_dir, app.logs):
        Path(folder).mkdir(parents=True, exist_ok=True)


def live_release(app: AppHost) -> str | None:
    """Return the tag `current` points at, or None before the first deploy."""
    link = Path(app.current_link)
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def releases(app: AppHost) -> list[str]:
    """Return the complete releases on the host, oldest build first."""
    found = []
    for folder in Path(app.releases_dir).glob("*/" + MARKER):
        try:
            built = json.loads(folder.read_text())["built_at"]
        except (OSError, ValueError, KeyError):
            continue
        found.append((built, folder.parent.name))
    return [tag for _, tag in sorted(found)]


def is_complete(app: AppHost, tag: str) -> bool:
    return (release_dir(app, tag) / MARKER).is_file()


def release_info(app: AppHost, tag: str) -> dict:
    """Return what the marker of a complete release records (tag, commit, built_at)."""
    return json.loads((release_dir(app, tag) / MARKER).read_text())


def new_staging_dir(app: AppHost, tag: str) -> Path:
    """Return a fresh, not yet existing folder beside the releases to build `tag` in."""
    return Path(app.releases_dir) / f".{tag}.partial-{secrets.token_hex(3)}"


def discard_staging(staging: Path) -> None:
    """Remove a staging folder (a failed build's, or what a finished build left)."""
    shutil.rmtree(staging, ignore_errors=True)


def remove_leftovers(app: AppHost) -> list[str]:
    """Remove staging folders of builds that never finished (a killed run's); return their names."""
    removed = []
    for folder in Path(app.releases_dir).glob(".*.partial-*"):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def finish_release(app: AppHost, staging: Path, tag: str, commit: str, warnings: list[str] | None = None) -> Path:
    """Mark the built staging folder complete and move it to releases/<tag>; return that path.

    A complete release of the same tag already there is replaced (an old incomplete build
    of a tag never is live: `current` only ever points at complete ones)."""
    (staging / MARKER).write_text(json.dumps({"tag": tag, "commit": commit, "built_at": _now(),
                                              "warnings": warnings or []}) + "\n")
    final = release_dir(app, tag)
    if final.exists():
        if Path(app.current_link).resolve() == final.resolve():
            raise RuntimeError(f"release {tag} is live; refusing to rebuild it in place")
        shutil.rmtree(final)
    os.rename(staging, final)
    return final


def migration_files(app: AppHost, tag: str) -> list[str]:
    folder = release_dir(app, tag) / app.migrations_dir
    return sorted(p.name for p in folder.glob("*.sql")) if folder.is_dir() else []


def _replace_symlink(link: Path, target: Path) -> None:
    temporary = link.with_name(f".{link.name}.{secrets.token_hex(3)}")
    os.symlink(target, temporary)
    os.replace(temporary, link)      # rename(2): atomic for anyone reading the link
    _fsync_dir(link.parent)


@task(name="switch-current", cache_policy=NO_CACHE)
def switch_current(app: AppHost, tag: str, config: int = 0) -> Path:
    """Point `current` at releases/<tag> atomically and write the PM2 ecosystem for it with
    configuration version `config`; return the ecosystem file. Raise RuntimeError when the release
    is not complete on the host."""
    if not is_complete(app, tag):
        raise RuntimeError(f"release {tag} is not complete on the host ({release_dir(app, tag)})")
    ecosystem = write_ecosystem(app, tag, config)
    _replace_symlink(Path(app.current_link), Path("releases") / tag)
    logger().info("current -> releases/%s", tag)
    return ecosystem


def write_ecosystem(app: AppHost, tag: str, config: int = 0) -> Path:
    """Write APP_ROOT/ecosystem.config.js for release `tag` (real paths, not `current`) with the variables
    of configuration version `config`; return it. The file holds the services' secrets: 0600."""
    apps = ecosystem_apps(app.services, tag, str(release_dir(app, tag).resolve()), app.logs, app.instances,
                          app_config.values_of(app, config), config)
    path = Path(app.app_root) / "ecosystem.config.js"
    body = ("// Generated by ubertruck-ops deploy from the app host and app configuration blocks; edit the\n"
            "// blocks, not this file. It holds the services' secrets: keep it 0600.\n"
            f"module.exports = {json.dumps({'apps': apps}, indent=2)};\n")
    app_config.write_private(path, body)
    return path


def share_with_web_server(dist: Path, app_root: Path) -> None:
    """Make the frontend build readable by the web server's user (nginx: www-data), which the
    project's umask 077 would lock out: its files exactly 0644 and its folders 0755 (nobody else may
    write them), every folder from APP_ROOT down to it passable but not listable or writable by others
    (0711 at least). Symbolic links are left as they are, not their targets. The rest of the release
    stays private. Raise ValueError when `dist` is not inside `app_root`."""
    path_down = dist.relative_to(app_root).parent.parts    # ValueError outside APP_ROOT: never chmod beyond it
    for root, _folders, files in os.walk(dist):           # os.walk does not enter linked folders
        os.chmod(root, 0o755)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o644)
    folder = app_root
    for part in ("", *path_down):
        folder = folder / part if part else folder
        os.chmod(folder, (os.stat(folder).st_mode | 0o711) & 0o7755)


def _make_shared_folders(path: Path) -> None:
    """Create `path` and its missing parents 0755: the web server passes through them."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir()
        folder.chmod(0o755)


@task(name="publish-frontend", cache_policy=NO_CACHE)
def publish_frontend(app: AppHost, tag: str) -> str | None:
    """Point the web root at releases/<tag>/frontend/dist atomically; return the web root, or
    None when the host serves no frontend. A web root that is a real folder (the guide's
    /var/www/html) is moved aside once, to <web root>.before-ubertruck, and says so."""
    if not app.web_root:
        return None
    dist = release_dir(app, tag) / "frontend" / "dist"
    if not (dist / "index.html").is_file():
        raise RuntimeError(f"release {tag} has no frontend build ({dist}/index.html is missing)")
    share_with_web_server(dist, Path(app.app_root))
    web_root = Path(app.web_root)
    _make_shared_folders(web_root.parent)
    if web_root.exists() and not web_root.is_symlink():
        aside = web_root.with_name(web_root.name + ".before-ubertruck")
        os.rename(web_root, aside)
        logger().warning("web root %s was a folder; moved it to %s and replaced it with a symlink", web_root, aside)
    _replace_symlink(web_root, dist.resolve())
    return str(web_root)


def read_history(app: AppHost) -> list[HistoryEntry]:
    """Return the host's deploy history, oldest first (lines a crash cut short are skipped)."""
    path = Path(app.shared_dir) / HISTORY
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(HistoryEntry.from_dict(json.loads(line)))
        except (ValueError, KeyError):
            continue
    return entries


def record(app: AppHost, action: str, from_release: str | None, to_release: str, outcome: str,
           flow_run: str | None = None, detail: str = "", config: int = 0, from_config: int = 0) -> HistoryEntry:
    """Append one entry to the host's deploy history, durably; return it."""
    entry = HistoryEntry(at=_now(), action=action, from_release=from_release, to_release=to_release,
                         outcome=outcome, flow_run=flow_run, detail=detail[:500], config=config,
                         from_config=from_config)
    path = Path(app.shared_dir) / HISTORY
    with open(path, "a") as handle:
        handle.write(json.dumps(entry.to_dict()) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


@task(name="prune-releases", cache_policy=NO_CACHE)
def remove_releases(app: AppHost, tags: list[str]) -> list[str]:
    """Delete the given release folders; return the tags deleted."""
    for tag in tags:
        shutil.rmtree(release_dir(app, tag), ignore_errors=True)
    return tags


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 1_000_000:06d}Z"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
