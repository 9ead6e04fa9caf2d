"""The sample Ubertruck application: a git repository with release tags, for the sandbox.

Six small Node services shaped like the guide's - TypeScript compiled by `tsc` from their dev
dependencies with source maps, one runtime dependency from npm (`ms`), their configuration from the
environment (no start without DATABASE_URL and JWT_SECRET), a test script - and a frontend,
following the application host contract in docs/deploys.md. Good releases differ in version and
migrations; the broken ones each carry one realistic fault, so deploy's safety nets can be shown
and tested on real PM2, Node and npm (packages come through npm's cache).
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import tempfile
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

# The services' npm packages, pinned: what every release's lock file resolves.
DEPENDENCIES = {"ms": "2.1.3"}
DEV_DEPENDENCIES = {"typescript": "5.9.3"}

# What each kind of fault does to a service's source or package.
CRASH = "crash"            # throws while starting: PM2 never sees it ready
NOT_READY = "not-ready"    # starts, but /health/ready answers 503 forever
BAD_LOCK = "bad-lock"      # package.json and package-lock.json disagree: npm ci fails
FAILING_TEST = "failing-test"    # builds, but `npm test` fails
API_ERRORS = "api-errors"        # healthy, but its API (a smoke URL) answers 500
ERRORS_ON_FLAG = "errors-on-flag"   # healthy, then its API answers 500 once the file named by its
                                    # ERROR_FLAG_FILE variable exists (a fault that shows during the bake)


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
    Release("v1.4.0", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), {"user-service": FAILING_TEST},
            note="user-service's tests fail"),
    Release("v1.4.1", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), {"booking-service": API_ERRORS},
            note="booking-service is healthy but its API answers 500"),
    Release("v1.4.2", ("001_feature_flags.sql", "002_feature_flag_notes.sql"), {"booking-service": ERRORS_ON_FLAG},
            note="booking-service starts failing requests some time after it went live"),
)
GOOD = ("v1.0.0", "v1.1.0", "v1.2.0", "v1.2.1")
RELEASES_DATED_FROM = 1767205800      # 2026-01-01 00:00 India time


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
    for number, release in enumerate(RELEASES):
        _write_release(repo, release)
        # Fixed dates, a day apart: every sandbox repository has the same commits, so a build of a
        # commit (a release's marker names it) means the same sources wherever the repository was made.
        dated = {"GIT_AUTHOR_DATE": f"@{RELEASES_DATED_FROM + number * 86400} +0530",
                 "GIT_COMMITTER_DATE": f"@{RELEASES_DATED_FROM + number * 86400} +0530"}
        run([*git, "add", "-A"])
        run([*git, "commit", "-q", "-m", f"{release.tag}: {release.note}"], env=dated)
        run([*git, "tag", "-a", release.tag, "-m", release.note], env=dated)
    return repo


def _write_release(repo: Path, release: Release) -> None:
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    version = release.tag.removeprefix("v")
    (repo / "README.md").write_text(f"# Ubertruck sample application {release.tag}\n\n{release.note}\n")
    main_template = (TEMPLATES / "service_main.ts").read_text()
    test_template = (TEMPLATES / "service_test.js").read_text()
    for service in SERVICES:
        folder = repo / service
        (folder / "src").mkdir(parents=True)
        (folder / "test").mkdir()
        fault = release.faults.get(service)
        (folder / "src" / "main.ts").write_text(
            main_template.replace("__SERVICE__", service).replace("/*FAULT*/", _fault_code(service, fault)))
        shutil.copy(TEMPLATES / "service_config.ts", folder / "src" / "config.ts")
        shutil.copy(TEMPLATES / "service_env.d.ts", folder / "src" / "env.d.ts")
        shutil.copy(TEMPLATES / "tsconfig.json", folder / "tsconfig.json")
        failing = "assert.strictEqual(config.jwtSecret, 'expected', 'a test that fails');" if fault == FAILING_TEST else ""
        (folder / "test" / "config.test.js").write_text(test_template.replace("/*TEST_FAULT*/", failing))
        scripts = {"build": "tsc -p tsconfig.json", "test": "node --test test/",
                   "start": "node --enable-source-maps dist/main.js"}
        if service == "user-service":
            scripts["migrate:production"] = "node migrate.js"
            shutil.copy(TEMPLATES / "migrate.js", folder / "migrate.js")
            (folder / "migrations").mkdir()
            for name in release.migrations:
                (folder / "migrations" / name).write_text(MIGRATIONS[name])
        _write_package(folder, service, version, scripts, out_of_lock={"left-pad": "^1.3.0"} if fault == BAD_LOCK else {})
    frontend = repo / "frontend"
    frontend.mkdir()
    shutil.copy(TEMPLATES / "frontend_build.js", frontend / "build.js")
    _write_package(frontend, "frontend", version, {"build": "node build.js"}, packages=False)
    (repo / ".gitignore").write_text("node_modules/\ndist/\n")


@functools.cache
def _locked_packages() -> str:
    """The package-lock.json of the services' pinned packages, resolved once per process through npm's
    cache (integrity hashes, no registry address: npm ci fetches from whichever registry npm uses)."""
    from ubertruck_ops.tasks.npm import require_node

    _, npm = require_node()
    with tempfile.TemporaryDirectory(prefix="ut-sample-lock-") as folder:
        (Path(folder) / "package.json").write_text(json.dumps(
            {"name": "sample", "version": "0.0.0", "private": True, "dependencies": DEPENDENCIES,
             "devDependencies": DEV_DEPENDENCIES}))
        run([npm, "install", "--package-lock-only", "--no-audit", "--no-fund", "--prefer-offline",
             "--omit-lockfile-registry-resolved"], cwd=Path(folder), timeout=300)
        return (Path(folder) / "package-lock.json").read_text()


def _write_package(folder: Path, name: str, version: str, scripts: dict, packages: bool = True,
                   out_of_lock: dict | None = None) -> None:
    """Write package.json and its lock file: with the pinned packages (`packages`), or none; a
    dependency in `out_of_lock` is in package.json only (npm ci refuses the pair)."""
    package = {"name": name, "version": version, "private": True, "scripts": scripts}
    if packages:
        package["dependencies"] = {**DEPENDENCIES, **(out_of_lock or {})}
        package["devDependencies"] = dict(DEV_DEPENDENCIES)
        lock = json.loads(_locked_packages())
        lock["packages"][""].update(dependencies=dict(DEPENDENCIES), devDependencies=dict(DEV_DEPENDENCIES))
    else:
        lock = {"lockfileVersion": 3, "requires": True, "packages": {"": {}}}
    lock = copy.deepcopy(lock)
    lock.update(name=name, version=version)
    lock["packages"][""].update(name=name, version=version)
    (folder / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    (folder / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")


def _fault_code(service: str, fault: str | None) -> str:
    ready, api_fails = "() => true", "(path: string) => false"
    lines = []
    if fault == CRASH:
        lines.append(f"throw new Error('{service}: cannot parse config: Unexpected token in JSON at position 0');")
    if fault == NOT_READY:
        lines.append("// The payment gateway client never connects, so the service is alive but not ready.")
        ready = "() => false"
    if fault == API_ERRORS:
        api_fails = "(path: string) => path.startsWith('/api/')"
    if fault == ERRORS_ON_FLAG:
        api_fails = ("(path: string) => path.startsWith('/api/') && !!process.env.ERROR_FLAG_FILE && "
                     "require('fs').existsSync(process.env.ERROR_FLAG_FILE)")
    return "\n".join([f"const READY_CHECK = {ready};", f"const API_FAILS = {api_fails};", *lines])
