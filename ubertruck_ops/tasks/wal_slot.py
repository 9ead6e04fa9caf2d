"""The WAL archiver's replication slot on the database server: read it (and who streams from it),
create it, drop it; and the server's WAL position and segment size.

Segment names are computed from LSNs here, not with pg_walfile_name(): that function names the
segment *before* an LSN on a segment boundary, which is exactly where a slot's restart_lsn sits
once pg_receivewal has confirmed a finished segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ubertruck_ops.core.physical import parse_lsn, segment_name
from ubertruck_ops.core.wal_archiving import SlotState


@dataclass(frozen=True)
class ServerWal:
    version_num: int
    segment_size: int
    timeline: int
    current_segment: str

    def segment(self, lsn: str) -> str:
        return segment_name(self.timeline, parse_lsn(lsn) // self.segment_size, self.segment_size)


def server_wal(conn: psycopg.Connection) -> ServerWal:
    """The server's version, WAL segment size, timeline (the current WAL file name's first part) and
    current segment. Raise psycopg's error on a standby (pg_current_wal_lsn() is the primary's)."""
    version, size, lsn, current = conn.execute(
        "SELECT current_setting('server_version_num')::int, pg_size_bytes(current_setting('wal_segment_size')), "
        "pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())").fetchone()
    timeline, size = int(current[:8], 16), int(size)
    return ServerWal(version, size, timeline, segment_name(timeline, parse_lsn(lsn) // size, size))


def read_slot(conn: psycopg.Connection, name: str, wal: ServerWal) -> SlotState:
    """The slot `name` as pg_replication_slots shows it, with the walsender's client where
    pg_stat_replication shows it (the same role's sessions, or with pg_read_all_stats)."""
    row = conn.execute(
        "SELECT s.slot_type, s.active_pid, s.wal_status, s.restart_lsn::text, r.client_addr::text, "
        "r.client_hostname, r.application_name, r.usename::text, "
        "to_char(r.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
        "FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
        "WHERE s.slot_name = %s", (name,)).fetchone()
    if row is None:
        return SlotState(exists=False)
    slot_type, pid, status, restart, address, hostname, application, role, since = row
    client = hostname or address or ("a local socket" if pid is not None and application else None)
    holder = ", ".join(part for part in (
        f"client {client}" if client else "", f"application_name {application}" if application else "",
        f"role {role}" if role else "", f"connected since {since} UTC" if since else "") if part)
    return SlotState(exists=True, active_pid=pid, wal_status=status, slot_type=slot_type, holder=holder,
                     restart_segment=wal.segment(restart) if restart else None)


def create_slot(conn: psycopg.Connection, name: str, wal: ServerWal) -> str:
    """Create physical slot `name`, reserving WAL at once; return the first segment it keeps."""
    lsn = conn.execute("SELECT lsn::text FROM pg_create_physical_replication_slot(%s, true)", (name,)).fetchone()[0]
    return wal.segment(lsn) if lsn else wal.current_segment


def drop_slot(conn: psycopg.Connection, name: str) -> None:
    conn.execute("SELECT pg_drop_replication_slot(%s)", (name,))
