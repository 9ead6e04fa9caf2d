"""Names of the global concurrency limits the project creates and its flows acquire (strict)."""

BACKUP_LOCK = "ubertruck-backup"   # nightly, incremental and restore-drill backups never overlap
DEPLOY_LOCK = "ubertruck-deploy"   # one deploy or rollback at a time

ALL_LOCKS = {BACKUP_LOCK: 1, DEPLOY_LOCK: 1}

# A backup waiting longer than this for another one is itself a problem worth a failure notice.
BACKUP_LOCK_WAIT_SECONDS = 4 * 3600

# A deploy lock whose holder was killed is freed by the Prefect server when its lease runs out
# (the server's minimum lease); a live holder renews it in the background.
DEPLOY_LOCK_LEASE_SECONDS = 60

# A backup holder renews its lease in the background; one killed is reclaimed by the next backup on
# its host (tasks/locks.py) or, under a Prefect server, when the lease runs out.
BACKUP_LOCK_LEASE_SECONDS = 300

# A run waiting for a lock says who holds it this often (a backup may wait up to 4 hours).
LOCK_WAIT_LOG_SECONDS = 60
