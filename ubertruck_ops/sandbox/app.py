"""The sample Ubertruck application: a git repository with release tags, for the sandbox.

Six tiny Node services and a frontend, following the application host contract in
docs/deploys.md, with no npm dependencies. Good releases differ in version and migrations;
the broken ones each carry one realistic fault, so deploy's safety nets can be shown
and tested on real PM2 and Node.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ubertruck_ops.blocks.app import AppHost, default_of
from ubertruck_ops.tasks.execute import run

TEMPLATES = Path(__file__).with_name("sample_app")
SERVICES: dict[str, int] = default_of(AppHost, "services")     # the guide's six services and ports

MIGRATIONS = {
    "001_feature_flags.sql": "CREATE TABLE IF NOT EXISTS core.feature_flags (\n"
                             "    name text PRIMARY KEY,\n    enabled boolean NOT NULL DEFAULT false\n);\n",
    "002_feature_flag_notes.sql": "ALTER TABLE core.feature_flags ADD COLUMN IF NOT EXISTS note text;\n"
                                  "INSERT INTO core.feature_flags (name, enabled, note)\n"
                                  "VALUES ('live_tracking', true, 'added by v1.1.0') ON CONFLICT DO NOTHING;\n",
    "003_driver_ratings.sql": "-- broken on purpose: the table it alters does not exist\n"
                              "ALTER TABLE fleet.driver_profiles ADD COLUMN rating numeric(2,1);\n",
}

# What each kind of fault does to a service's source or package.
CRASH = "crash"            # throws while starting: PM2 never sees it ready
NOT_READY = "not-ready"    # starts, but /health/ready answers 503 forever
BAD_LOCK = "bad-lock"      # package.json and package-lock.json disagree: npm ci fails


@dataclass(frozen=True)
class Release:
    tag: str
    migrations: tuple[str, ...]
    faults: dict[str, str] = field(default_factory=dict)
    note: str = ""


RELEASES = (
    Release("v1.0.0", ("001_feature_flags.sql",), note="first release"),
    Release("v1.1.0", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), note="adds a migration"),
    Release("v1.2.0", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), note="code only"),
    Release("v1.2.1", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), note="code only"),
    Release("v1.3.0", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), {"booking-service": CRASH},
            note="booking-service crashes on start"),
    Release("v1.3.1", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), {"payment-service": NOT_READY},
            note="payment-service never becomes ready"),
    Release("v1.3.2", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), {"fleet-service": BAD_LOCK},
            note="fleet-service's lock file is out of sync (npm ci fails)"),
    Release("v1.3.3", ("001_feature_flags.sql", "002_feature_flag_notes.sql", "003_driver_ratings.sql"),
            note="a migration that fails"),
)
GOOD = ("v1.0.0", "v1.1.0", "v1.2.0", "v1.2.1")


def project_pm2() -> str | None:
    """Return pm2 from this project's .tools/ (where ./ops installs it) or from PATH, or None."""
    local = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / "pm2"
    return str(local) if local.exists() else shutil.which("pm2")


def create_app_repository(path: Path | str) -> Path:
    """Create the sample application's git repository at `path` (replaced if present),
    one commit and tag per release in RELEASES; return the path."""
    repo = Path(path)
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=Ubertruck Sandbox", "-c", "user.email=sandbox@ubertruck.invalid",
           "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"]
    run([*git, "init", "-q", "-b", "main"])
    for release in RELEASES:
        _write_release(repo, release)
        run([*git, "add", "-A"])
        run([*git, "commit", "-q", "-m", f"{release.tag}: {release.note}"])
        run([*git, "tag", "-a", release.tag, "-m", release.note])
    return repo


def _write_release(repo: Path, release: Release) -> None:
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    version = release.tag.removeprefix("v")
    (repo / "README.md").write_text(f"# Ubertruck sample application {release.tag}\n\n{release.note}\n")
    main_template = (TEMPLATES / "service_main.js").read_text()
    for service in SERVICES:
        folder = repo / service
        (folder / "src").mkdir(parents=True)
        fault = release.faults.get(service)
        (folder / "src" / "main.js").write_text(
            main_template.replace("__SERVICE__", service).replace("/*FAULT*/", _fault_code(service, fault)))
        shutil.copy(TEMPLATES / "build.js", folder / "build.js")
        scripts = {"build": "node build.js", "start": "node dist/main.js"}
        if service == "user-service":
            scripts["migrate:production"] = "node migrate.js"
            shutil.copy(TEMPLATES / "migrate.js", folder / "migrate.js")
            (folder / "migrations").mkdir()
            for name in release.migrations:
                (folder / "migrations" / name).write_text(MIGRATIONS[name])
        dependencies = {"left-pad": "^1.3.0"} if fault == BAD_LOCK else {}
        _write_package(folder, service, version, scripts, dependencies)
    frontend = repo / "frontend"
    frontend.mkdir()
    shutil.copy(TEMPLATES / "frontend_build.js", frontend / "build.js")
    _write_package(frontend, "frontend", version, {"build": "node build.js"}, {})
    (repo / ".gitignore").write_text("node_modules/\ndist/\n")


def _write_package(folder: Path, name: str, version: str, scripts: dict, dependencies: dict) -> None:
    package = {"name": name, "version": version, "private": True, "scripts": scripts}
    if dependencies:
        package["dependencies"] = dependencies
    (folder / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    # The lock file never lists the dependencies: in sync only when there are none.
    lock = {"name": name, "version": version, "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": name, "version": version}}}
    (folder / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")


def _fault_code(service: str, fault: str | None) -> str:
    if fault == CRASH:
        return ("const READY_CHECK = () => true;\n"
                f"throw new Error('{service}: cannot parse config: Unexpected token in JSON at position 0');")
    if fault == NOT_READY:
        return ("// The payment gateway client never connects, so the service is alive but not ready.\n"
                "const READY_CHECK = () => false;")
    return "const READY_CHECK = () => true;"
