"""Node and npm: install a release's packages, build them, run its migrations."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.core.audit import AuditVerdict, audit_verdict
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


class TestsFailed(BuildFailed):
    """`npm test` of one package failed: the release is refused before anything live changes."""


# What `npm init` writes as the test script: no tests, not a failing test suite.
NPM_INIT_TEST = 'echo "Error: no test specified" && exit 1'


def _script(folder: Path, name: str) -> str | None:
    package = folder / "package.json"
    return json.loads(package.read_text()).get("scripts", {}).get(name) if package.is_file() else None


def test_report_tail(text: str, lines: int = 12) -> str:
    """The lines of a test report that say what failed (node --test, jest, mocha: "not ok", "✖",
    assertion messages, the counts), else its last lines."""
    keep = re.compile(r"not ok|✖|failing|Error|expected|actual|# (?:pass|fail)|Tests?:", re.IGNORECASE)
    picked = [line.rstrip() for line in text.splitlines() if keep.search(line) and "node:internal" not in line]
    return "\n".join((picked or text.strip().splitlines())[-lines:])


# Idempotent: `npm ci` starts by removing node_modules, the build writes only dist/, prune only removes.
@task(name="npm-build", cache_policy=NO_CACHE, **network_retries(transient_failure))
def build_package(folder: Path) -> str:
    """Build one package of a release in `folder`, as the guide's release process does: `npm ci` with
    its dev dependencies (the compiler), `npm run build` (source maps stay in dist/), `npm test` where a
    test script exists, then `npm prune --omit=dev` so only what runs goes live (npm's cache,
    ~/.npm of the deploying user, is reused between builds). Return a one-line summary. Raise TestsFailed naming the package
    with the tail of the test report, BuildFailed naming the package and step with npm's own error;
    retried when the registry or network failed."""
    _, npm = require_node()
    name = folder.name
    steps = [("npm ci", [npm, "ci", "--include=dev", "--no-audit", "--no-fund", "--prefer-offline"])]
    if _script(folder, "build"):
        steps.append(("npm run build", [npm, "run", "build"]))
    test = _script(folder, "test")
    if test and test.strip() != NPM_INIT_TEST:
        steps.append(("npm test", [npm, "test"]))
    steps.append(("npm prune", [npm, "prune", "--omit=dev", "--no-audit", "--no-fund"]))
    for label, argv in steps:
        try:
            run(argv, cwd=folder, env=_npm_env(), timeout=1200)
        except CommandFailed as exc:
            if label == "npm test":
                raise TestsFailed(f"npm test failed in {name}; nothing live was changed. The report's end:\n"
                                  f"{test_report_tail(exc.stdout + chr(10) + exc.stderr)}") from None
            errors = [line for line in exc.stderr.splitlines() if "npm error" in line or "Error" in line]
            detail = " ".join(line.replace("npm error", "").strip() for line in errors[:4]) or exc.stderr[-400:]
            raise BuildFailed(f"{label} failed in {name}: {detail.strip()}",
                              stderr=exc.stderr if label == "npm ci" else "") from None
    return f"{name}: " + ", ".join(label for label, _ in steps)


class AuditFailed(RuntimeError):
    """npm audit found vulnerabilities at or over the app block's level: the release is refused."""


@task(name="npm-audit", cache_policy=NO_CACHE)
def audit_package(folder: Path, level: str, registry: str | None = None) -> AuditVerdict:
    """`npm audit --omit=dev --audit-level=LEVEL` in `folder` (after `npm ci`), against `registry` when
    given (else npm's own). Return the verdict: passed, or unavailable (the registry could not be
    asked or refuses audits: logged as a warning). Raise AuditFailed when it found vulnerabilities at
    or over `level`."""
    _, npm = require_node()
    argv = [npm, "audit", "--omit=dev", f"--audit-level={level}", "--json"] + ([f"--registry={registry}"]
                                                                              if registry else [])
    try:
        out = run(argv, cwd=folder, env=_npm_env({"npm_config_audit": "true"}), timeout=120).stdout
    except CommandFailed as exc:        # exit 1: vulnerabilities at the level, or no answer from the registry
        out = exc.stdout.encode()
    text = out.decode(errors="replace")
    try:
        report = json.loads(text)
    except ValueError:
        report = None
    verdict = audit_verdict(folder.name, report, level, text[-300:])
    if verdict.kind == "failed":
        raise AuditFailed(verdict.text + "; nothing live was changed")
    if verdict.kind == "unavailable":
        logger().warning("npm audit: %s", verdict.text)
    return verdict


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
