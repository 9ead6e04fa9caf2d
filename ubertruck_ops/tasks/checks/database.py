"""Checks on PostgreSQL: reachable, connections against max_connections, buffer cache hit rate,
the business queries, dead tuples; and the weekly VACUUM ANALYZE."""

from __future__ import annotations

import datetime as dt

from psycopg import sql

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.core import checks
from ubertruck_ops.core.checks import CheckResult
from ubertruck_ops.tasks.postgres import DatabaseUnreachable, connect


def reachable(db: PostgresDatabase) -> CheckResult:
    """The database answers a query: critical otherwise, naming host and database (never the password)."""
    try:
        with connect(db) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
    except DatabaseUnreachable as exc:
        return checks.critical("database reachable", "unreachable", "answers", str(exc)[:300])
    return checks.ok("database reachable", version, "answers", f"{db.describe()}: PostgreSQL {version}")


def connections(db: PostgresDatabase, limits: CheckThresholds) -> CheckResult:
    with connect(db) as conn:
        used, maximum = conn.execute("SELECT (SELECT count(*) FROM pg_stat_activity), "
                                     "current_setting('max_connections')::int").fetchone()
    percent = 100.0 * used / maximum
    return checks.above("database connections", percent, [(limits.connections_high_pct, checks.WARN, "high")], "%",
                        f"{used} of max_connections {maximum} ({percent:.0f}%)")


def buffer_cache_hit(db: PostgresDatabase, limits: CheckThresholds) -> CheckResult:
    with connect(db) as conn:
        hit, read = conn.execute("SELECT blks_hit, blks_read FROM pg_stat_database "
                                 "WHERE datname = current_database()").fetchone()
    if hit + read == 0:
        return checks.ok("postgres cache hit rate", None, None, "no reads yet")
    rate = 100.0 * hit / (hit + read)
    return checks.below("postgres cache hit rate", rate, [(limits.cache_hit_medium_pct, checks.WARN, "medium")], "%",
                        f"{rate:.1f}% of block reads from shared buffers")


def query_number(db: PostgresDatabase, sql_text: str, day: dt.date | None = None) -> float:
    """Run one business query (returning one number); return it. Raise on any failure."""
    with connect(db) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        row = conn.execute(sql_text, {"day": (day or dt.date.today()).isoformat()} if "%(day)s" in sql_text
                           else None).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def dead_tuples(db: PostgresDatabase) -> list[dict]:
    """Return every user table's live and dead tuple counts."""
    with connect(db) as conn:
        rows = conn.execute("SELECT schemaname, relname, n_live_tup, n_dead_tup FROM pg_stat_user_tables "
                            "ORDER BY n_dead_tup DESC").fetchall()
    return [{"table": f"{s}.{t}", "live": live, "dead": dead} for s, t, live, dead in rows]


def vacuum_analyze(db: PostgresDatabase, tables: list[str]) -> None:
    """VACUUM ANALYZE each table (outside a transaction, as VACUUM requires)."""
    with connect(db, autocommit=True) as conn:
        for table in tables:
            schema, _, name = table.partition(".")
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}.{}").format(sql.Identifier(schema), sql.Identifier(name)))


def database_size(db: PostgresDatabase) -> int:
    with connect(db) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
