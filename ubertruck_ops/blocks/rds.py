"""The RDS instance an environment's database runs on (the guide's production: RDS PostgreSQL 15),
with what its six-hourly snapshots and restore drills need."""

from __future__ import annotations

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from pydantic import Field, field_validator

from ubertruck_ops.blocks.aws import region_of
from ubertruck_ops.blocks.schema_cache import SchemaOncePerClass
from ubertruck_ops.core.rds import validate_identifier


class RdsInstance(SchemaOncePerClass, Block):
    """An RDS DB instance: its id, where its snapshots are copied, how long they are kept, and the
    PITR window's alert levels."""

    _block_type_name = "Ubertruck RDS Instance"
    _block_type_slug = "ubertruck-rds-instance"
    _description = ("The RDS instance of an environment: snapshots, their DR copies and expiry, the automated "
                    "backups' PITR window, and restore drills into scratch instances.")

    instance_id: str = Field(title="Instance id",
                             description="DBInstanceIdentifier of the source instance (RDS_INSTANCE_ID); never "
                                         "restored over.")
    dr_region: str | None = Field(default=None, title="DR region",
                                  description="Region each snapshot is copied to (RDS_DR_REGION); empty: no copy.")
    kms_key_id: str | None = Field(default=None, title="DR KMS key",
                                   description="KMS key (id, alias or ARN) in the DR region that encrypts the copies "
                                               "(RDS_KMS_KEY_ID); needed to copy an encrypted snapshot across regions.")
    snapshot_retention_days: float = Field(default=7, gt=0, title="Snapshot retention (days)",
                                           description="Our manual snapshots older than this are deleted, never "
                                                       "the newest.")
    min_backup_retention_days: int = Field(default=3, ge=0, title="Minimum automated-backup retention (days)",
                                           description="Critical when the instance's BackupRetentionPeriod is "
                                                       "shorter (the guide keeps 3 days of transaction logs).")
    rpo_warn_minutes: float = Field(default=15, gt=0, title="RPO warning (minutes)",
                                    description="Warn when LatestRestorableTime is older than this.")
    rpo_critical_minutes: float = Field(default=60, gt=0, title="RPO critical (minutes)",
                                        description="Critical when LatestRestorableTime is older than this.")
    poll_seconds: float = Field(default=30, gt=0, title="Poll interval (s)",
                                description="How often snapshot and instance states are read while waiting.")
    snapshot_timeout_seconds: float = Field(default=3 * 3600, gt=0, title="Snapshot timeout (s)",
                                            description="A snapshot or copy not available by then fails the run.")
    restore_timeout_seconds: float = Field(default=3 * 3600, gt=0, title="Restore timeout (s)",
                                           description="A restored instance not available by then fails the run "
                                                       "(a drill deletes it).")
    scratch_instance_class: str | None = Field(default=None, title="Scratch instance class",
                                               description="DBInstanceClass of drill scratch instances, e.g. "
                                                           "db.t3.medium; empty: the source's class (a fair RTO).")
    leftover_hours: float = Field(default=6, gt=0, title="Leftover scratch age (hours)",
                                  description="Scratch instances older than this (left by a killed drill) are "
                                              "deleted by the next drill.")
    aws: AwsCredentials = Field(default_factory=AwsCredentials, title="AWS credentials",
                                        description="Region, keys and endpoint override (RDS_ENDPOINT_URL) of the "
                                                    "RDS API.")

    @field_validator("instance_id")
    @classmethod
    def _valid_instance_id(cls, value: str) -> str:
        return validate_identifier(value, "RDS_INSTANCE_ID")

    @property
    def region(self) -> str:
        return region_of(self.aws)
