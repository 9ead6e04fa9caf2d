"""The backup manifest: what a backup holds, written last so that it marks a backup complete.

It holds no secret and no row data: names, sizes, checksums, versions and row counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z-[a-z]+-[0-9a-f]{6}$")


@dataclass(frozen=True)
class StoredObject:
    """One encrypted object of a backup."""

    name: str       # file name inside the backup folder, e.g. database.dump.zst.gpg
    role: str       # database | roles | app | config
    size: int       # bytes stored (encrypted)
    sha256: str     # of the stored bytes


@dataclass
class Manifest:
    backup_id: str
    kind: str                                  # "logical" (pg_dump), "base" or "incremental" (pg_basebackup)
    started_at: str                            # ISO 8601 UTC
    finished_at: str
    database: dict                             # name, host, port, server_version
    tools: dict                                # program -> version line
    encryption: dict                           # mode, cipher, recipients (public ids only)
    objects: list[StoredObject] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    parent: str | None = None
    missing_paths: list[str] = field(default_factory=list)
    physical: dict = field(default_factory=dict)   # start/end LSN, system identifier, timeline (physical kinds)
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Manifest":
        """Given manifest bytes, return the manifest. Raise ValueError when it is not one we can read."""
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT_VERSION:
                raise ValueError(f"unsupported manifest format {raw.get('format')!r}")
            raw["objects"] = [StoredObject(**o) for o in raw.get("objects", [])]
            return cls(**raw)
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable manifest: {exc}") from None

    def object(self, role: str) -> StoredObject | None:
        return next((o for o in self.objects if o.role == role), None)

    @property
    def finished(self) -> datetime:
        return parse_time(self.finished_at)

    @property
    def started(self) -> datetime:
        return parse_time(self.started_at)


def new_backup_id(now: datetime, kind: str, token: str) -> str:
    """Return a sortable backup id such as 20261124T020000Z-logical-1a2b3c."""
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{kind}-{token[:6]}"


def validate_backup_id(backup_id: str) -> str:
    """Return backup_id. Raise ValueError when it is not shaped like one of ours (stops path tricks)."""
    if not _BACKUP_ID.match(backup_id or ""):
        raise ValueError(f"backup id {backup_id!r} is not of the form YYYYMMDDTHHMMSSZ-kind-xxxxxx")
    return backup_id


def backup_folder(backup_id: str) -> str:
    """Return the repository folder of a backup: YYYY/MM/DD/<backup-id> (the guide's date folders)."""
    validate_backup_id(backup_id)
    return f"{backup_id[0:4]}/{backup_id[4:6]}/{backup_id[6:8]}/{backup_id}"


def backup_id_of_key(key: str) -> str | None:
    """Given a repository key (relative to the prefix), return the backup id it belongs to, if any."""
    parts = key.split("/")
    if len(parts) >= 5 and _BACKUP_ID.match(parts[3]) and backup_folder(parts[3]) == "/".join(parts[:4]):
        return parts[3]
    return None


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")
