"""Node and npm: install a release's packages, build them, run its migrations."""

from __future__ import annotations

import json
import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.retries import npm_failure_is_transient
from ubertruck_ops.log import logger
from ubertruck_ops.tasks.execute import CommandFailed, mask, require_tool, run
from ubertruck_ops.tasks.postgres import client_bin_dir
from ubertruck_ops.tasks.retrying import network_retries

NODE_INSTALL = "apt-get install -y nodejs npm   (Node.js 20, as the guide's init-server.sh installs)"
# npm must never stop to ask, phone home or print ads into the deploy log.
_NPM_ENV = {"npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false",
            "npm_config_yes": "true", "NODE_ENV": "production"}


class BuildFailed(RuntimeError):
    """Installing or building one package of a release failed. `stderr`: npm's own output when
    `npm ci` failed (empty for a build failure), for telling a registry outage from a broken release."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.stderr = stderr


def transient_failure(exc: BaseException) -> bool:
    """An `npm ci` that failed because the registry or the network did (never a build failure)."""
    return isinstance(exc, BuildFailed) and npm_failure_is_transient(exc.stderr)


def require_node() -> tuple[str, str]:
    """Return the paths of node and npm. Raise ToolMissing with the install command when absent."""
    return require_tool("node", NODE_INSTALL), require_tool("npm", NODE_INSTALL)


def _npm_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**_NPM_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(extra or {})}


def has_script(folder: Path, name: str) -> bool:
    package = folder / "package.json"
    return package.is_file() and name in json.loads(package.read_text()).get("scripts", {})


# Idempotent: `npm ci` starts by removing node_modules, and the build writes only dist/.
@task(name="npm-install-and-build", cache_policy=NO_CACHE, **network_retries(transient_failure))
def install_and_build(folder: Path, omit_dev: bool = True) -> str:
    """`npm ci` (without dev dependencies when `omit_dev`) then `npm run build` where a build
    script exists, in `folder`. Return a one-line summary. Raise BuildFailed naming the
    package and the step, with npm's own error; retried when the registry or network failed."""
    _, npm = require_node()
    name = folder.name
    install = [npm, "ci", "--no-audit", "--no-fund"] + (["--omit=dev"] if omit_dev else [])
    for label, argv in [("npm ci", install), ("npm run build", [npm, "run", "build"])]:
        if label == "npm run build" and not has_script(folder, "build"):
            continue
        try:
            run(argv, cwd=folder, env=_npm_env({"NODE_ENV": "production" if omit_dev else "development"}),
                timeout=1200)
        except CommandFailed as exc:
            errors = [line for line in exc.stderr.splitlines() if "npm error" in line or "Error" in line]
            detail = " ".join(line.replace("npm error", "").strip() for line in errors[:4]) or exc.stderr[-400:]
            raise BuildFailed(f"{label} failed in {name}: {detail.strip()}",
                              stderr=exc.stderr if label == "npm ci" else "") from None
    return f"{name}: installed" + (" and built" if has_script(folder, "build") else "")


# Never retried: a migration that failed half-way is not safe to run again blindly.
@task(name="run-migrations", cache_policy=NO_CACHE)
def run_migrations(folder: Path, database: PostgresDatabase) -> str:
    """Run `npm run migrate:production` in `folder` against `database` (DATABASE_URL in its
    environment, never in argv); return its output. Raise CommandFailed when it fails."""
    _, npm = require_node()
    url = database.url()
    secrets = [url, database.password.get_secret_value() if database.password else ""]
    path = f"{client_bin_dir()}:{os.environ.get('PATH', '/usr/bin:/bin')}"   # psql for migration runners that need it
    out = run([npm, "run", "--silent", "migrate:production"], cwd=folder, timeout=3600,
              env=_npm_env({"DATABASE_URL": url, "PATH": path}), secrets=secrets)
    # A migration runner may echo its connection string: its output is logged and returned masked.
    text = mask(out.stdout.decode(errors="replace").strip(), secrets)
    logger().info("migrations: %s", text or "nothing to apply")
    return text
