"""nightly-backup: the production database and files, encrypted, into the repository.

The story: take the backup lock; open one snapshot of the database; count every
table's rows and describe its roles inside that snapshot; stream pg_dump of that same
snapshot through zstd and gpg into the repository; archive the app and config files;
write the manifest last - from then on the backup is final, whatever fails after it; apply
retention (after a failed backup too, so a full repository frees itself); report.
"""

from __future__ import annotations

import secrets
import time

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.core import notices
from ubertruck_ops.core.manifest import Manifest, backup_folder, iso, new_backup_id, utc_now
from ubertruck_ops.core.steps import Steps
from ubertruck_ops.core.text import human_bytes, human_seconds, one_line
from ubertruck_ops.log import logger
from ubertruck_ops.tasks import catalog, dump, postgres
from ubertruck_ops.tasks.crypto import gpg_session, zstd_version
from ubertruck_ops.tasks.locks import backup_lock
from ubertruck_ops.tasks.notify import notify
from ubertruck_ops.tasks.repository import open_repository


@flow(name="nightly-backup", description="Encrypted logical backup of the database plus app and config archives.")
def nightly_backup(environment: str = "production") -> dict:
    """Back up `environment`'s database and files; return the backup id and sizes.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
    """
    log = logger()
    step = Steps(log)
    env = load_environment(environment)
    repo = open_repository(env.repository)
    backup_id = final = None
    retention: dict = {}
    try:
        step("wait for the backup lock")
        with backup_lock(environment, holder=f"nightly backup of {environment}"):
            try:
                clock = time.monotonic()
                started = utc_now()
                backup_id = new_backup_id(started, "logical", secrets.token_hex(3))
                folder = backup_folder(backup_id)
                log.info("backup %s of %s into %s", backup_id, env.database.describe(), repo.description)

                with gpg_session(env.encryption) as gpg:
                    step("open a consistent snapshot")
                    with postgres.open_snapshot(env.database) as snapshot:
                        step("count rows in the snapshot")
                        counts = postgres.row_counts(snapshot.conn)
                        roles = postgres.describe_roles(snapshot.conn)
                        step("dump the database")
                        objects = [dump.dump_database(env.database, snapshot, gpg, repo, folder)]
                    step("store roles")
                    objects.append(dump.store_roles(roles, gpg, repo, folder))
                    step("archive app and config files")
                    archives, missing = dump.archive_files(env.archive, gpg, repo, folder)
                    objects += archives
                    tools = {"pg_dump": postgres.tool_version("pg_dump"), "gpg": gpg.version(), "zstd": zstd_version()}

                step("write the manifest")
                manifest = Manifest(
                    backup_id=backup_id, kind="logical", started_at=iso(started), finished_at=iso(utc_now()),
                    database={"name": env.database.database, "host": env.database.host, "port": env.database.port,
                              "server_version": snapshot.server_version, "owner": roles["database_owner"]},
                    tools=tools,
                    encryption={"mode": env.encryption.mode, "cipher": "AES256",
                                "recipients": env.encryption.recipients},
                    objects=objects, row_counts=counts, missing_paths=missing)
                catalog.write_manifest(repo, manifest)
            except Exception as exc:
                # Not a backup: remove what it wrote, then apply retention anyway - on a full
                # repository nothing else would ever free space for the next run.
                retention = catalog.clean_up_failed_backup(repo, env.repository, backup_id, utc_now())
                if catalog.out_of_space(exc):
                    raise catalog.repository_full(repo.description, exc, retention) from exc
                raise
            # From here on the backup is final: a failure below fails the run, never discards it.
            final = manifest
            duration = time.monotonic() - clock

            step("apply retention")
            retention = catalog.apply_retention(repo, env.repository, utc_now(), taken=manifest)
    except Exception as exc:
        _report_unreadable(env, environment, retention)
        if final is None:
            notify(env.slack, notices.operation_failed("nightly backup", environment, step.current, one_line(exc),
                                                       notices.after_failed_backup(retention) if backup_id else []))
            raise
        notify(env.slack, notices.backup_kept_after_failure("nightly backup", environment, final.backup_id,
                                                            step.current, one_line(exc)))
        raise catalog.FailedAfterBackup(final.backup_id, step.current, exc) from exc

    _report_unreadable(env, environment, retention)
    create_markdown_artifact(key="nightly-backup-summary", markdown=_summary(manifest, duration, retention, repo),
                             description=f"nightly backup {backup_id}")
    notify(env.slack, notices.backup_succeeded(environment, manifest, duration,
                                               warnings=[w for w in [retention["clock_warning"]] if w]))
    log.info("backup %s complete in %s", backup_id, human_seconds(duration))
    return {"backup_id": backup_id, "duration_seconds": round(duration, 2),
            "objects": {o.name: o.size for o in manifest.objects}, "missing_paths": missing,
            "retention": retention}


def _report_unreadable(env, environment: str, retention: dict) -> None:
    """Tell Slack about backups retention kept because their manifest cannot be read (the log already says)."""
    if retention.get("unreadable"):
        notify(env.slack, notices.unreadable_manifests(environment, retention["unreadable"]))


def _summary(manifest: Manifest, duration: float, retention: dict, repo) -> str:
    rows = "\n".join(f"| {o.name} | {human_bytes(o.size)} | `{o.sha256[:16]}…` |" for o in manifest.objects)
    tables = "\n".join(f"| {t} | {n:,} |" for t, n in manifest.row_counts.items())
    missing = "\n".join(f"- {p}" for p in manifest.missing_paths) or "- none"
    return f"""# Nightly backup `{manifest.backup_id}`

- repository: {repo.description}/{backup_folder(manifest.backup_id)}
- database: {manifest.database['name']} (PostgreSQL {manifest.database['server_version']})
- duration: {human_seconds(duration)}
- encryption: GnuPG {manifest.encryption['mode']}, AES256

| object | size | sha256 |
|---|---|---|
{rows}

| table | rows (same snapshot as the dump) |
|---|---|
{tables}

Missing optional paths (not archived):
{missing}

Retention: expired {len(retention['expired'])}, incomplete leftovers removed {len(retention['incomplete_removed'])},
stale multipart uploads aborted {retention['uploads_aborted']}, {human_bytes(retention['bytes_freed'])} freed;
kept because their manifest is unreadable: {', '.join(sorted(retention['unreadable'])) or 'none'}.
{('**Clock:** ' + retention['clock_warning']) if retention['clock_warning'] else ''}
"""
