"""The encryption and repository blocks as plain values, for processes that must not import Prefect.

`ubertruck-ops wal-push` (PostgreSQL's archive_command: one process per WAL segment) reads the
two block documents it needs over HTTP instead of through Prefect's Block classes, whose import
alone costs ~1.5 s. This module holds what it builds from them, checked by the same rules the
blocks apply (BackupEncryption._one_mode, BackupRepository._s3_needs_bucket and its
part_size_mib bounds; tests/test_wal_push.py holds both sides to the same verdicts).
Every message names fields, never values: a value may be a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

# The block type slugs of BackupEncryption and BackupRepository (their _block_type_slug).
ENCRYPTION_SLUG = "ubertruck-backup-encryption"
REPOSITORY_SLUG = "ubertruck-backup-repository"
PART_SIZE_MIB = (5, 512)       # BackupRepository.part_size_mib: ge, le


def document_name(environment: str, part: str) -> str:
    """Return the block document name of one part of an environment (blocks.environment.block_name's
    rule). Raise ValueError when the environment name is not lowercase letters, digits and dashes."""
    if not environment or not all(c.islower() or c.isdigit() or c == "-" for c in environment):
        raise ValueError(f"environment name {environment!r} must be lowercase letters, digits and dashes")
    return f"{environment}-{part}"


def check_encryption_mode(passphrase: object, recipients: object, public_keys: object) -> None:
    """Raise ValueError unless exactly one of a passphrase or recipients is set, and recipients
    come with their public keys."""
    if bool(passphrase) == bool(recipients):
        raise ValueError("set exactly one of BACKUP_ENCRYPTION_KEY (passphrase) or BACKUP_GPG_RECIPIENTS (public keys)")
    if recipients and not public_keys:
        raise ValueError("public-key encryption needs the recipients' armoured public keys (BACKUP_GPG_PUBLIC_KEYS)")


def check_repository_location(url: str, has_bucket: bool) -> None:
    """Raise ValueError unless `url` is s3://... with a bucket block, or an absolute local folder."""
    if url.startswith("s3://") and not has_bucket:
        raise ValueError(f"repository {url} is on S3 but no S3 bucket block is configured")
    if not url.startswith("s3://") and not url.startswith("/"):
        raise ValueError(f"BACKUP_REPOSITORY must be s3://bucket/prefix or an absolute path, not {url!r}")


def s3_prefix(url: str) -> str:
    """The key prefix inside the bucket of an s3:// location ('' for the bucket root), no trailing slash."""
    return url[len("s3://"):].partition("/")[2].strip("/")


@dataclass(frozen=True)
class EncryptionKeys:
    """The key material of a BackupEncryption block, as tasks/crypto.py's gpg session reads it."""

    passphrase: SecretStr | None = None
    recipients: tuple[str, ...] = ()
    public_keys: str | None = None
    private_key: SecretStr | None = None
    private_key_passphrase: SecretStr | None = None

    def __post_init__(self) -> None:
        check_encryption_mode(self.passphrase, self.recipients, self.public_keys)

    @classmethod
    def from_document(cls, data: Mapping[str, Any], where: str) -> EncryptionKeys:
        """Given a BackupEncryption document's data (secrets included), return its keys. Raise
        ValueError naming `where` and the field when a value has the wrong type or breaks a rule."""
        recipients = data.get("recipients") or []
        if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
            raise ValueError(f"{where} is malformed (recipients: not a list of strings)")
        try:
            return cls(passphrase=_secret(data, "passphrase", where), recipients=tuple(recipients),
                       public_keys=text(data, "public_keys", where),
                       private_key=_secret(data, "private_key", where),
                       private_key_passphrase=_secret(data, "private_key_passphrase", where))
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where} is malformed ({exc})") from None


def text(data: Mapping[str, Any], field: str, where: str) -> str | None:
    """Return the string (or None) under `field`. Raise ValueError naming the field otherwise."""
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where} is malformed ({field}: not a string)")
    return value


def _secret(data: Mapping[str, Any], field: str, where: str) -> SecretStr | None:
    value = text(data, field, where)
    return SecretStr(value) if value else None


def part_size_mib(data: Mapping[str, Any], where: str) -> int:
    """Return the multipart part size in MiB under part_size_mib (default 16), within PART_SIZE_MIB."""
    value = data.get("part_size_mib", 16)
    low, high = PART_SIZE_MIB
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{where} is malformed (part_size_mib: an integer from {low} to {high})")
    return value
