"""nightly-backup: the production database and files, encrypted, into the repository.

The story: take the backup lock; open one snapshot of the database and read the server's
clock in it (the backup is dated by it; core/clock.py); count every table's rows and describe
its roles inside that snapshot; stream pg_dump of that same snapshot through zstd and gpg into
the repository; archive the app and config files; write the manifest last - from then on the
backup is final, whatever fails after it; apply retention (after a failed backup too, so a full
repository frees itself), which deletes nothing by age unless this host's clock agrees with the
server's and the repository's; report.
"""

from __future__ import annotations

from prefect import flow

from ubertruck_ops.core import notices, reports
from ubertruck_ops.core.manifest import QUOTED, Manifest, iso
from ubertruck_ops.core.text import human_seconds
from ubertruck_ops.operations.backup import BackupAttempt
from ubertruck_ops.operations.frame import operation
from ubertruck_ops.tasks import catalog, dump, postgres
from ubertruck_ops.tasks.checks import backups as backup_checks
from ubertruck_ops.tasks.crypto import gpg_session, zstd_version


@flow(name="nightly-backup", description="Encrypted logical backup of the database plus app and config archives.")
def nightly_backup(environment: str = "production") -> dict:
    """Back up `environment`'s database and files; return the backup id and sizes.

    Args:
        environment: The environment whose blocks to use (saved by `ubertruck-ops blocks init --name NAME`).
    """
    with operation("nightly backup", environment, ping=True) as op, BackupAttempt(op) as backup:
        env, repo, step = op.env, op.repo, op.step
        with backup.locked():
            with backup.until_manifest():
                op.restart_clock()
                with gpg_session(env.encryption) as gpg:
                    step("open a consistent snapshot")
                    with postgres.open_snapshot(env.database) as snapshot:
                        # Named and dated by the server's clock, read in the dump's own connection.
                        backup.read_clock(snapshot.clock)
                        started = backup.now()
                        folder = backup.begin("logical", started)
                        op.log.info("backup %s of %s into %s", backup.backup_id, env.database.describe(),
                                    repo.description)
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
                    tools = {"pg_dump": postgres.tool_version("pg_dump", snapshot.tools), "gpg": gpg.version(),
                             "zstd": zstd_version()}

                step("write the manifest")
                manifest = Manifest(
                    backup_id=backup.backup_id, kind="logical", started_at=iso(started),
                    finished_at=iso(backup.now()),
                    database={"name": env.database.database, "host": env.database.host, "port": env.database.port,
                              "server_version": snapshot.server_version, "owner": roles["database_owner"]},
                    tools=tools,
                    encryption={"mode": env.encryption.mode, "cipher": "AES256",
                                "recipients": env.encryption.recipients},
                    objects=objects, row_counts=counts, row_count_keys=QUOTED, missing_paths=missing)
                backup.write_manifest(manifest)
            duration = op.elapsed

            step("compare with the recent backups")
            odd = backup_checks.anomalies_of(catalog.list_manifests(repo), manifest, env.thresholds)
            for anomaly in odd:
                op.log.warning("backup %s looks wrong: %s", manifest.backup_id, anomaly)
            step("apply retention")
            retention = backup.apply_retention()
        backup.report_unreadable()
        op.publish("nightly-backup-summary", f"nightly backup {manifest.backup_id}",
                   reports.nightly_backup_report(manifest, duration, retention, repo.description, odd),
                   notices.backup_succeeded(environment, manifest, duration,
                                            warnings=backup.warnings() + odd))
        op.log.info("backup %s complete in %s", manifest.backup_id, human_seconds(duration))
        return {"backup_id": manifest.backup_id, "duration_seconds": round(duration, 2),
                "objects": {o.name: o.size for o in manifest.objects}, "missing_paths": missing, "anomalies": odd,
                "retention": retention}
