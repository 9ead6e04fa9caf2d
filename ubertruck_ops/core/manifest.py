"""The backup manifest: what a backup holds, written last so that it marks a backup complete.

It holds no secret and no row data: names, sizes, checksums, versions and row counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
DOTTED, QUOTED = "dotted", "quoted"       # Manifest.row_count_keys
# A name that needs no quotes to read back unambiguously: no dot, no quote, no capital, no space.
_PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")
# Used with fullmatch: `$` would also accept a trailing newline.
_BACKUP_ID = re.compile(r"\d{8}T\d{6}Z-(?P<kind>[a-z]+)-[0-9a-f]{6}")
# An object is a plain file in its backup's folder: never a path (`../../etc/shadow`, `/etc/shadow`), never
# a hidden or partial file. A manifest is untrusted input: whoever can write the repository writes it.
_OBJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


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
    # How row_counts' keys name tables: "quoted" (row_count_key: unambiguous) in manifests written since
    # issue 22; "dotted" (schema.table joined by a dot) in earlier ones, which lack the field.
    row_count_keys: str = DOTTED
    parent: str | None = None
    missing_paths: list[str] = field(default_factory=list)
    physical: dict = field(default_factory=dict)   # start/end LSN, system identifier, timeline (physical kinds)
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Given manifest bytes, return the manifest. Raise ValueError when it is not one we can read:
        not JSON, not an object, a format number other than ours (a newer release wrote it), a
        missing or mistyped field. Unknown keys in a manifest of our format are ignored (a later
        release of the same format may add optional ones)."""
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"unreadable manifest: not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"unreadable manifest: a JSON {type(raw).__name__}, not an object")
        version = raw.get("format")
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ValueError(f"unsupported manifest format {version}: written by a newer release "
                             f"(this one reads format {FORMAT_VERSION})")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported manifest format {version!r} (this release reads format {FORMAT_VERSION})")
        known = {f.name for f in fields(cls)}
        try:
            raw = {k: v for k, v in raw.items() if k in known}
            objects = raw.get("objects", [])
            if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
                raise TypeError("objects is not a list of objects")
            stored = {f.name for f in fields(StoredObject)}
            raw["objects"] = [StoredObject(**{k: v for k, v in o.items() if k in stored}) for o in objects]
            manifest = cls(**raw)
        except TypeError as exc:
            raise ValueError(f"unreadable manifest: {exc}") from None
        _check_types(manifest)
        return manifest

    def object(self, role: str) -> StoredObject | None:
        return next((o for o in self.objects if o.role == role), None)

    @property
    def finished(self) -> datetime:
        return parse_time(self.finished_at)

    @property
    def started(self) -> datetime:
        return parse_time(self.started_at)

    @property
    def run_order(self) -> tuple:
        """Sort key: the order backups ran in. Times are whole seconds, so two short backups can
        finish in the same one; the start, then the id (start time, a random token) break the tie."""
        return (self.finished, self.started, self.backup_id)


def row_count_key(schema: str, table: str, style: str = QUOTED) -> str:
    """Given a table's schema and name, return its key among a manifest's row counts. QUOTED keys are
    unambiguous: a name that is not plain (a dot, a quote, a capital...) is double-quoted as SQL
    quotes identifiers, so schema `a.b` table `c` is `"a.b".c` and schema `a` table `b.c` is
    `a."b.c"`; plain names read as before (`core.users`). DOTTED is the earlier, ambiguous join, used
    to compare with manifests written before the field existed."""
    if style == DOTTED:
        return f"{schema}.{table}"

    def quoted(name: str) -> str:
        return name if _PLAIN_IDENTIFIER.fullmatch(name) else '"' + name.replace('"', '""') + '"'

    return f"{quoted(schema)}.{quoted(table)}"


def new_backup_id(now: datetime, kind: str, token: str) -> str:
    """Return a sortable backup id such as 20261124T020000Z-logical-1a2b3c."""
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{kind}-{token[:6]}"


def validate_backup_id(backup_id: str) -> str:
    """Return backup_id. Raise ValueError when it is not shaped like one of ours (stops path tricks)."""
    if not isinstance(backup_id, str) or not _BACKUP_ID.fullmatch(backup_id):
        raise ValueError(f"backup id {backup_id!r} is not of the form YYYYMMDDTHHMMSSZ-kind-xxxxxx")
    return backup_id


def is_object_name(name: str) -> bool:
    """Return True when `name` can name an object of a backup: a plain file name (no path, not hidden,
    not a `.partial`), so a key built from it stays inside the backup's folder."""
    return bool(_OBJECT_NAME.fullmatch(name)) and ".." not in name and not name.endswith(".partial")


def backup_folder(backup_id: str) -> str:
    """Return the repository folder of a backup: YYYY/MM/DD/<backup-id> (the guide's date folders)."""
    validate_backup_id(backup_id)
    return f"{backup_id[0:4]}/{backup_id[4:6]}/{backup_id[6:8]}/{backup_id}"


def backup_id_of_key(key: str) -> str | None:
    """Given a repository key (relative to the prefix), return the backup id it belongs to, if any."""
    parts = key.split("/")
    if len(parts) >= 5 and _BACKUP_ID.fullmatch(parts[3]) and backup_folder(parts[3]) == "/".join(parts[:4]):
        return parts[3]
    return None


def is_manifest_key(key: str) -> bool:
    """Given a repository key, return True when it is a backup folder's manifest: YYYY/MM/DD/<id>/manifest.json."""
    parts = key.split("/")
    return len(parts) == 5 and parts[4] == MANIFEST_NAME and backup_id_of_key(key) is not None


def kind_of_id(backup_id: str) -> str:
    """Given a backup id, return the kind it names (logical, base, incremental), known even without a manifest."""
    found = _BACKUP_ID.fullmatch(backup_id)
    return found["kind"] if found else ""


def _check_types(manifest: Manifest) -> None:
    """Raise ValueError when a field retention or restore relies on has the wrong shape."""
    problems = []
    try:
        validate_backup_id(manifest.backup_id)
    except ValueError as exc:
        problems.append(str(exc))
    for name in ("kind", "started_at", "finished_at"):
        if not isinstance(getattr(manifest, name), str):
            problems.append(f"{name} is not a string")
    for name in ("started_at", "finished_at"):
        try:
            parse_time(getattr(manifest, name))
        except (TypeError, ValueError):
            problems.append(f"{name} {getattr(manifest, name)!r} is not an ISO 8601 time")
    if manifest.row_count_keys not in (DOTTED, QUOTED):
        problems.append(f"row_count_keys {manifest.row_count_keys!r} is not one this release knows ({DOTTED}, {QUOTED})")
    if manifest.parent is not None and not isinstance(manifest.parent, str):
        problems.append("parent is not a backup id")
    for name in ("database", "tools", "encryption", "row_counts", "physical"):
        if not isinstance(getattr(manifest, name), dict):
            problems.append(f"{name} is not an object")
    for obj in manifest.objects:
        if not (isinstance(obj.name, str) and isinstance(obj.role, str) and isinstance(obj.size, int)
                and isinstance(obj.sha256, str)):
            problems.append(f"object {obj.name!r} has a mistyped name, role, size or sha256")
        elif not is_object_name(obj.name):
            problems.append(f"object name {obj.name[:80]!r} is not a plain file name of the backup's folder "
                            "(letters, digits and . _ -; no path); nothing of it was read")
    if problems:
        raise ValueError("unreadable manifest: " + "; ".join(problems))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def utc_now() -> datetime:
    """This host's clock, the one seam backups read "now" through. Whether it may be trusted is
    core/clock.py's question (compared with the database server's and the repository's); tests move
    it with libfaketime around the real command, never with a variable or a patch."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
