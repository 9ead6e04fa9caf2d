"""Where backups are stored: a local folder or an S3 (compatible) bucket."""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect_aws import S3Bucket
from pydantic import Field, model_validator

from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass


class BackupRepository(SchemaOncePerClass, Block):
    """The backup repository and how long backups are kept in it."""

    _block_type_name = "Ubertruck Backup Repository"
    _block_type_slug = "ubertruck-backup-repository"
    _description = "Backup storage: s3://bucket/prefix (with an S3 bucket block) or a local folder; retention."

    url: str = Field(title="Location", description="s3://bucket/prefix or an absolute local folder.")
    s3_bucket: S3Bucket | None = Field(default=None, title="S3 bucket",
                                       description="prefect-aws bucket block with credentials, for s3:// locations.")
    server_side_encryption: str | None = Field(default="AES256", title="S3 server-side encryption",
                                               description="x-amz-server-side-encryption header; empty to omit.")
    part_size_mib: int = Field(default=16, ge=5, le=512, title="Multipart part size (MiB)",
                               description="Memory per upload is about this size.")
    keep_full_days: int = Field(default=30, ge=1, title="Keep full backups (days)",
                                description="Full backups older than this are deleted, except the newest complete one.")
    incomplete_grace_hours: int = Field(default=24, ge=1, title="Incomplete leftovers grace (hours)",
                                        description="Folders without a manifest older than this are removed.")

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> BackupRepository:
        if self.is_s3 and self.s3_bucket is None:
            raise ValueError(f"repository {self.url} is on S3 but no S3 bucket block is configured")
        if not self.is_s3 and not self.url.startswith("/"):
            raise ValueError(f"BACKUP_REPOSITORY must be s3://bucket/prefix or an absolute path, not {self.url!r}")
        return self

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket ('' for the bucket root), without trailing slash."""
        if not self.is_s3:
            return ""
        return self.url[len("s3://"):].partition("/")[2].strip("/")
