"""Building a release and applying its migrations: what a single-host deploy does in its own
process and a rolling deploy asks each host (build) and its first host (migrate) to do.

Nothing live changes here: a build lands in its own release folder, and migrations run before
any service is handed over (after the deploy's backup).
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ubertruck_ops.blocks.app import AppHost
from ubertruck_ops.blocks.environment import Environment
from ubertruck_ops.core.releases import missing_tag
from ubertruck_ops.core.text import one_line
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import git, npm, pm2, postgres, release

BUILD_PARALLELISM = 3      # packages built at once: measured on 2 cores, npm and tsc leave a core idle alone


class MigrationFailed(RuntimeError):
    """A migration of the new release failed; nothing was switched."""


def check_tools_and_tag(app: AppHost, tag: str, host: str | None = None) -> dict[str, str]:
    """Check node, npm and pm2 (each named with its install command when missing) and that `tag` is in
    the app repository; return the repository's tags (tag -> commit). Raise ValueError naming the
    newest tags (and `host`, on a rolling deploy's host) when it is not: nothing was changed."""
    pm2.pm2_command(app)
    tags = git.remote_tags(app.repo_url)
    refused = missing_tag(tag, tags, app.repo_url, host)
    if refused:
        raise ValueError(refused)
    return tags


def build_release(app: AppHost, tag: str, remote_commit: str) -> str:
    """Make releases/<tag> a complete build of the tag - every package installed with its dev
    dependencies, built, tested, audited, pruned - and return its commit. A complete build of the same
    commit already on the host is reused (a redeploy or roll-forward costs no build). Raise
    npm.TestsFailed, npm.AuditFailed or npm.BuildFailed naming the package: nothing live changed."""
    if release.is_complete(app, tag):
        built = release.release_info(app, tag)
        if built.get("commit") == remote_commit:
            logger().info("releases/%s is already built from %s; reusing it", tag, remote_commit[:12])
            for warning in built.get("warnings", []):
                logger().warning("npm audit, when %s was built: %s", tag, warning)
            return remote_commit
    for leftover in release.remove_leftovers(app):
        logger().warning("removed %s, left by a build that never finished", leftover)
    staging = release.new_staging_dir(app, tag)
    try:
        commit = git.check_out(app.repo_url, tag, staging)
        packages = [staging / folder for folder in [*app.services, "frontend"] if (staging / folder / "package.json").is_file()]
        missing = [s for s in app.services if staging / s not in packages]
        if missing:
            raise RuntimeError(f"release {tag} has no {missing[0]}/package.json")
        # Packages build side by side (npm and tsc mostly wait on one core each); the first failure,
        # in the services' order, is the one raised.
        with ThreadPoolExecutor(max_workers=BUILD_PARALLELISM) as pool:
            futures = [pool.submit(contextvars.copy_context().run, _build_one, folder, app) for folder in packages]
            verdicts = [future.result() for future in futures]
        # Kept with the build: a reuse of it says again what its audit could not check.
        release.finish_release(app, staging, tag, commit, warnings=[v.text for v in verdicts if v.kind != "passed"])
        return commit
    finally:
        release.discard_staging(staging)


def _build_one(folder: Path, app: AppHost):
    """Build, test and prune one package, then audit it; return the audit's verdict."""
    npm.build_package(folder)
    return npm.audit_package(folder, app.audit_level, app.audit_registry)


def migrate(env: Environment, app: AppHost, tag: str, pending: list[str], backup_id: str) -> None:
    """Apply the release's pending migrations from its folder on this host. Raise MigrationFailed
    naming the first migration that did not apply and the backup taken before."""
    service_folder = release.release_dir(app, tag) / app.migrations_dir.split("/")[0]
    try:
        npm.run_migrations(service_folder, env.database)
    except Exception as exc:
        applied = postgres.applied_migrations(env.database, app.migrations_table)
        failing = next((m for m in pending if m not in applied), pending[-1])
        raise MigrationFailed(f"migration {failing} failed ({one_line(exc)[:600]}); nothing was switched; "
                              f"backup {backup_id} holds the database as it was before the migrations") from None
