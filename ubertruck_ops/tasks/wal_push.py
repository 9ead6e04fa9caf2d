"""`ubertruck-ops wal-push`, PostgreSQL's archive_command, without Prefect in the process.

One process per 16 MiB segment must keep up with the server's WAL, so it neither starts a Prefect
API (13-15 s) nor imports Prefect (~1.5 s): it reads the environment's encryption and repository
block documents over HTTP from PREFECT_API_URL (tasks/block_documents.py), checks them by the
blocks' rules (blocks/plain.py) and pushes with the same code as WalStreamer (tasks/wal_store.py).
Without PREFECT_API_URL it refuses: PostgreSQL keeps the segment and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ubertruck_ops.blocks.plain import (
    ENCRYPTION_SLUG,
    REPOSITORY_SLUG,
    EncryptionKeys,
    check_repository_location,
    document_name,
    part_size_mib,
    s3_prefix,
    text,
)
from ubertruck_ops.tasks.block_documents import Api, BlockMissing, api_from_environment, read_block_data
from ubertruck_ops.tasks.repository import LocalRepository, Repository, S3Access, S3Repository
from ubertruck_ops.tasks.wal_store import push_file

# AwsCredentials fields this path cannot honour without prefect-aws: refused, never ignored.
_UNSUPPORTED_AWS = ("assume_role_arn",)


def push_wal(path: str, environment: str, environ: Mapping[str, str] | None = None) -> str:
    """Archive the WAL file at `path` into `environment`'s repository; return 'archived' or
    'already archived'. Raise ValueError (what to set or fix) or the push's error otherwise."""
    keys, repo = load_push_blocks(api_from_environment(environ, "wal-push"), environment)
    return push_file(keys, path, repo)


def load_push_blocks(api: Api, environment: str) -> tuple[EncryptionKeys, Repository]:
    """Return the encryption keys and the repository of `environment`, read from `api`. Raise
    ValueError naming a missing or malformed block and saying what to run."""
    found = {}
    for part, slug in (("encryption", ENCRYPTION_SLUG), ("repository", REPOSITORY_SLUG)):
        name = document_name(environment, part)
        try:
            found[part] = read_block_data(api, slug, name)
        except BlockMissing:
            raise ValueError(f"block {slug}/{name} not found in the Prefect API at {api.url}: "
                             f"run `ubertruck-ops blocks init --name {environment}` first") from None
    fix = f": fix it in the UI or run `ubertruck-ops blocks init --name {environment}` again"
    encryption_where = f"block {ENCRYPTION_SLUG}/{document_name(environment, 'encryption')}"
    repository_where = f"block {REPOSITORY_SLUG}/{document_name(environment, 'repository')}"
    try:
        keys = EncryptionKeys.from_document(found["encryption"], encryption_where)
        repo = repository_from_document(found["repository"], repository_where)
    except ValueError as exc:
        raise ValueError(f"{exc}{fix}") from None
    return keys, repo


def repository_from_document(data: Mapping[str, Any], where: str) -> Repository:
    """Given a BackupRepository document's data (nested S3 bucket and credentials inline), return the
    repository. Raise ValueError naming the field that is missing, of the wrong type or unsupported."""
    url = text(data, "url", where)
    if not url:
        raise ValueError(f"{where} is malformed (url: missing)")
    bucket = data.get("s3_bucket")
    if bucket is not None and not isinstance(bucket, dict):
        raise ValueError(f"{where} is malformed (s3_bucket: not a block)")
    try:
        check_repository_location(url, bucket is not None)
    except ValueError as exc:
        raise ValueError(f"{where} is malformed ({exc})") from None
    part_size = part_size_mib(data, where)
    if not url.startswith("s3://"):
        return LocalRepository(url)
    bucket_name = text(bucket, "bucket_name", f"{where} (s3_bucket)")
    if not bucket_name:
        raise ValueError(f"{where} is malformed (s3_bucket.bucket_name: missing)")
    return S3Repository(bucket_name, s3_prefix(url), _access(bucket.get("credentials") or {}, where).client(),
                        part_size_mib=part_size, sse=text(data, "server_side_encryption", where))


def _access(credentials: Mapping[str, Any], where: str) -> S3Access:
    """The plain S3Access of an AwsCredentials document."""
    from pydantic import SecretStr

    inner = f"{where} (s3_bucket.credentials)"
    if not isinstance(credentials, dict):
        raise ValueError(f"{inner} is malformed: not a block")
    for name in _UNSUPPORTED_AWS:
        if credentials.get(name):
            raise ValueError(f"{inner} sets {name}, which wal-push does not support: give the archiving host "
                             "access keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a profile")
    params = credentials.get("aws_client_parameters") or {}
    if not isinstance(params, dict):
        raise ValueError(f"{inner} is malformed (aws_client_parameters: not an object)")
    if params.get("config"):
        raise ValueError(f"{inner} sets aws_client_parameters.config, which wal-push does not support")
    verify = params.get("verify_cert_path") or params.get("verify")
    if verify is not None and not isinstance(verify, (bool, str)):
        raise ValueError(f"{inner} is malformed (aws_client_parameters.verify: not a boolean or a path)")
    # A MinIOCredentials block (S3Bucket takes either) names its keys minio_root_*.
    secret = text(credentials, "aws_secret_access_key", inner) or text(credentials, "minio_root_password", inner)
    token = text(credentials, "aws_session_token", inner)
    use_ssl = params.get("use_ssl", True)
    return S3Access(region=text(credentials, "region_name", inner),
                    endpoint_url=text(params, "endpoint_url", inner),
                    access_key_id=text(credentials, "aws_access_key_id", inner)
                    or text(credentials, "minio_root_user", inner),
                    secret_access_key=SecretStr(secret) if secret else None,
                    session_token=SecretStr(token) if token else None,
                    profile_name=text(credentials, "profile_name", inner),
                    use_ssl=use_ssl if isinstance(use_ssl, bool) else True, verify=verify,
                    api_version=text(params, "api_version", inner))
