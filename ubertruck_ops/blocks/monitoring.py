"""What the checklists measure against: the guide's alert thresholds, the business queries,
and the Redis cache. Operators tune them in the Prefect UI."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass

# The sandbox schema's answers to the checklists' business questions. The real schema may
# differ: the queries live in a block so they can be changed without a release.
DEFAULT_QUERIES = {
    "active_users": "SELECT count(DISTINCT customer_id) FROM booking.bookings "
                    "WHERE created_at > now() - interval '24 hours'",
    "booking_success_rate": "SELECT coalesce(100.0 * count(*) FILTER (WHERE status <> 'cancelled') "
                            "/ nullif(count(*), 0), 100) FROM booking.bookings "
                            "WHERE created_at > now() - interval '24 hours'",
    "pending_settlements": "SELECT count(*) FROM payment.payments WHERE status = 'captured' AND settled_at IS NULL "
                           "AND created_at < now() - interval '2 days'",
    "failed_background_jobs": "SELECT count(*) FROM payment.payments WHERE status = 'failed' "
                              "AND created_at > now() - interval '24 hours'",
    "bookings_day": "SELECT count(*) FROM booking.bookings WHERE created_at >= %(day)s::date "
                    "AND created_at < %(day)s::date + 1",
    "revenue_day": "SELECT coalesce(sum(amount), 0) FROM payment.payments WHERE status = 'captured' "
                   "AND created_at >= %(day)s::date AND created_at < %(day)s::date + 1",
    "truck_utilization_day": "SELECT coalesce(100.0 * count(DISTINCT b.truck_id) / nullif((SELECT count(*) FROM "
                             "fleet.trucks WHERE status = 'active'), 0), 0) FROM booking.bookings b "
                             "WHERE b.truck_id IS NOT NULL AND b.scheduled_at >= %(day)s::date "
                             "AND b.scheduled_at < %(day)s::date + 1",
    "new_users_day": "SELECT count(*) FROM core.users WHERE created_at >= %(day)s::date "
                     "AND created_at < %(day)s::date + 1",
    "failed_logins": "SELECT count(*) FROM admin.audit_log WHERE action = 'login_failed' "
                     "AND created_at > now() - interval '24 hours'",
}


class CheckThresholds(SchemaOncePerClass, Block):
    """The guide's alert rules (section 7.3) and what each check looks at."""

    _block_type_name = "Ubertruck Check Thresholds"
    _block_type_slug = "ubertruck-check-thresholds"
    _description = "Thresholds of the daily checklists and the maintenance flows (the guide's alert rules)."

    check_timeout_seconds: float = Field(default=10, gt=0, title="Per-check timeout (s)",
                                         description="A check that does not finish in time is reported and the "
                                                     "checklist moves on.")
    response_time_critical_s: float = Field(default=5, title="Response time critical (s)",
                                            description="Critical when the slowest service's median /health response "
                                                        "takes longer (guide 7.3: 5 s).")
    response_time_medium_s: float = Field(default=2, title="Response time medium (s)",
                                          description="Medium priority when the slowest service's median /health "
                                                      "response takes longer (2 s).")
    error_rate_critical_pct: float = Field(default=10, title="Error rate critical (%)",
                                           description="Critical when more than this share of the last 24 h's "
                                                       "bookings failed (guide 7.3: 10%).")
    error_rate_high_pct: float = Field(default=5, title="Error rate high (%)",
                                       description="High priority when more than this share of the last 24 h's "
                                                   "bookings failed (5%).")
    cpu_high_pct: float = Field(default=90, title="CPU high (%)",
                                description="High priority when CPU use over one second is above this.")
    cpu_medium_pct: float = Field(default=80, title="CPU medium (%)",
                                  description="Medium priority when CPU use over one second is above this.")
    memory_high_pct: float = Field(default=90, title="Memory high (%)",
                                   description="High priority when memory use is above this.")
    disk_free_critical_pct: float = Field(default=10, title="Disk free critical (%)",
                                          description="Critical when a checked disk has less free space than this.")
    disk_used_low_pct: float = Field(default=70, title="Disk used low priority (%)",
                                     description="Low priority when a checked disk is fuller than this.")
    backup_size_drop_pct: float = Field(default=30, ge=0, le=100, title="Backup size drop warns (%)",
                                        description="A backup storing this much less than the median of the recent "
                                                    "ones warns (in the run, Slack and the morning checklist).")
    backup_rows_drop_pct: float = Field(default=10, ge=0, le=100, title="Table rows drop warns (%)",
                                        description="A table with this many fewer rows than in the previous backup "
                                                    "warns (tables of 100 rows or more; a missing table always).")
    backup_faster_factor: float = Field(default=5, gt=1, title="Backup faster than usual warns (x)",
                                        description="A backup this many times faster than the recent median warns.")
    backup_compare_runs: int = Field(default=7, ge=1, title="Backups compared",
                                     description="How many recent backups the size and duration medians cover.")
    watch_interval_seconds: float = Field(default=30, gt=0, title="watch: seconds between rounds",
                                          description="How often `ubertruck-ops watch` checks everything (guide 7.1: "
                                                      "30 s; each probe has a 5 s timeout).")
    unreadable_log_lines_pct: float = Field(
        default=5, title="Unreadable access-log lines (%)",
        description="watch: more than this share of the last 5 minutes' access-log lines (3 at least) not in the "
                    "ubertruck_timed format is a high finding naming the format; every unreadable line counts as "
                    "a failed request.")
    watch_rounds_to_alert: int = Field(default=3, ge=1, title="watch: failing rounds before an alert",
                                       description="A target is down after this many failing rounds in a row "
                                                   "(guide 7.1: 3).")
    watch_medium_minutes: float = Field(default=10, gt=0, title="watch: medium findings after (min)",
                                        description="A medium-priority finding (CPU above its medium limit) is "
                                                    "posted once it has lasted this long (guide 7.3: within 15 "
                                                    "minutes); critical and high ones after the failing rounds.")
    watch_remind_minutes: float = Field(default=30, gt=0, title="watch: reminder every (min)",
                                        description="While a target stays down, Slack hears it again this often.")
    wal_slot_warn_mib: float = Field(default=1024, gt=0, title="WAL slot: retained WAL high (MiB)",
                                     description="High priority when our replication slot (ubertruck_wal) makes the "
                                                 "primary keep more WAL than this (a healthy archiver keeps it "
                                                 "under a few segments; docs/backups-and-recovery.md: why 1 GiB).")
    wal_slot_critical_mib: float = Field(default=4096, gt=0, title="WAL slot: retained WAL critical (MiB)",
                                         description="Critical when the slot makes the primary keep more WAL than "
                                                     "this; the suggested max_slot_wal_keep_size is twice it "
                                                     "(docs/backups-and-recovery.md: why 4 GiB).")
    wal_lag_critical_seconds: float = Field(default=600, gt=0, title="WAL archive lag critical (s)",
                                            description="Critical when finished WAL segments wait unarchived and "
                                                        "the newest archived one is older than this (docs/backups-and-recovery.md: why "
                                                        "10 minutes).")
    wal_lag_critical_segments: int = Field(default=64, ge=1, title="WAL archive lag critical (segments)",
                                           description="Critical when more finished WAL segments than this wait "
                                                       "unarchived (64 x 16 MiB = 1 GiB; docs/backups-and-recovery.md).")
    access_log: str | None = Field(default=None, title="nginx access log",
                                   description="The guide's nginx access log in the `ubertruck_timed` log_format "
                                               "(docs/alerts.md): error rate and p95 response time over 5 minutes.")
    queue_backlog_high: int = Field(default=1000, title="Queue backlog high",
                                    description="High priority when the queue lists hold more entries than this in "
                                                "total.")
    cache_hit_medium_pct: float = Field(default=90, title="Cache hit rate medium below (%)",
                                        description="Medium priority when the Redis or PostgreSQL cache hit rate is "
                                                    "below this.")
    connections_high_pct: float = Field(default=80, title="Database connections high (% of max_connections)",
                                        description="High priority when PostgreSQL connections exceed this share of "
                                                    "max_connections.")
    tls_expiry_days: int = Field(default=30, title="TLS certificate expiry low priority (days)",
                                 description="Low priority when a certificate expires within this many days; critical "
                                             "once expired.")
    failed_jobs_medium: int = Field(default=0, title="Failed background jobs medium (above)",
                                    description="Medium priority when more background jobs failed in the last 24 h.")
    failed_logins_high: int = Field(default=20, title="Failed logins per day high (above)",
                                    description="High priority when more logins failed in the last 24 h (the audit "
                                                "log, and the host's auth log).")
    restarts_medium: int = Field(default=0, title="PM2 restarts since the last run, medium (above)",
                                 description="Medium priority when a service restarted more often since the previous "
                                             "checklist.")
    backup_max_age_hours: float = Field(default=26, title="Newest nightly backup max age (h)",
                                        description="Critical when the newest complete nightly backup is older than "
                                                    "this.")
    disk_paths: list[str] = Field(default_factory=lambda: ["/"], title="Disks (mount points) to check",
                                  description="Mount points whose free space is checked.")
    endpoints: list[str] = Field(default_factory=list, title="Extra endpoints",
                                 description="URLs checked besides every service's /health (e.g. the public site).")
    tls_hosts: list[str] = Field(default_factory=list, title="TLS hosts", description="host[:port] whose "
                                 "certificate expiry is checked (evening checklist and monthly maintenance).")
    auth_log: str | None = Field(default="/var/log/auth.log", title="Auth log",
                                 description="Read for failed logins where readable.")
    queue_keys: list[str] = Field(default_factory=list, title="Queue keys",
                                  description="Redis lists whose length is the queue backlog (e.g. bull:jobs:wait).")
    cache_cleanup_patterns: list[str] = Field(default_factory=lambda: ["cache:tmp:*"], title="Cache clean-up patterns",
                                              description="Redis keys removed by the weekly maintenance.")
    vacuum_dead_tuples: int = Field(default=10000, title="VACUUM ANALYZE above dead tuples",
                                    description="The weekly maintenance runs VACUUM ANALYZE on tables with more dead "
                                                "tuples than this.")
    vacuum_dead_ratio_pct: float = Field(default=10, title="... or above dead tuple ratio (%)",
                                         description="... or on tables whose dead tuples exceed this share of all "
                                                     "their tuples.")
    log_max_size_mb: float = Field(default=100, title="Log file max size (MB)",
                                   description="Low priority when a log file in the log folder is larger (not "
                                               "rotated).")
    log_max_age_days: float = Field(default=14, title="Log file max age (days)",
                                    description="Low priority when a log file in the log folder was not written for "
                                                "longer (not rotated).")


class BusinessQueries(SchemaOncePerClass, Block):
    """SQL answering the checklists' business questions; each returns one number."""

    _block_type_name = "Ubertruck Business Queries"
    _block_type_slug = "ubertruck-business-queries"
    _description = "SQL for active users, booking success, settlements and the daily metrics; one number each."

    queries: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_QUERIES), title="Queries",
                                    description="name -> SQL returning one number; %(day)s is the day reported on.")


class RedisCache(SchemaOncePerClass, Block):
    """The Redis server the services use as cache and queue."""

    _block_type_name = "Ubertruck Redis"
    _block_type_slug = "ubertruck-redis"
    _description = "Redis URL and password (a secret)."

    url: str = Field(default="redis://127.0.0.1:6379/0", title="URL", description="redis://host:port/db, no password.")
    password: SecretStr | None = Field(default=None, title="Password",
                                       description="Redis AUTH password (REDIS_PASSWORD); empty when none is set.")
    timeout_seconds: float = Field(default=5, title="Timeout (s)",
                                   description="Connect and socket timeout of every Redis call.")
