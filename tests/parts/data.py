"""Data checks on a PostgreSQL server: tables' checksums, the databases it holds."""

from __future__ import annotations

import psycopg

from ubertruck_ops.blocks.database import PostgresDatabase


def table_checksums(db: PostgresDatabase, database: str | None = None) -> dict[str, tuple[int, str]]:
    """Return {table: (row count, md5 of its rows in a stable order)} for every user table."""
    result = {}
    with psycopg.connect(**db.connect_kwargs(database)) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            count, digest = conn.execute(
                f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{schema}"."{table}" t'
            ).fetchone()
            result[f"{schema}.{table}"] = (count, digest)
    return result


def list_databases(db: PostgresDatabase) -> set[str]:
    with psycopg.connect(**db.connect_kwargs("postgres")) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}

