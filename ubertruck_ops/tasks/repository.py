"""The backup repository: a local folder or an S3 (compatible) bucket.

Both keep the same promise: an object becomes visible under its key only once it is
whole (local: written to `.partial`, fsynced, renamed; S3: a multipart upload that is
completed, or aborted so no orphaned parts stay behind and cost money).

S3 calls are retried by botocore itself (its "standard" retry mode: 5xx, throttling and dropped
connections, with jittered exponential backoff), each request on its own: a failed part is sent
again from memory, never the pg_dump that produced it. `is_transient` tells the tasks that read
the repository (and retry as Prefect tasks) a passing failure from a lasting one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any, Protocol

from ubertruck_ops.log import logger

if TYPE_CHECKING:     # the block imports Prefect; `wal-push` builds repositories from plain values
    from botocore.config import Config
    from pydantic import SecretStr

    from ubertruck_ops.blocks.repository import BackupRepository

CHUNK = 1 << 20
PARTIAL = ".partial"
S3_ATTEMPTS = 6                 # per request, the first included (botocore's max_attempts)
LINK_SECONDS = 7 * 86400        # how long a link to a report stays valid on S3


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    modified: datetime


class ObjectWriter(Protocol):
    def write(self, chunk: bytes) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class RepositoryError(RuntimeError):
    """The repository refused or failed an operation after retries."""


class Repository(Protocol):
    """What flows and tasks may use of a backup repository (local folder or S3 bucket); keys are
    relative to the repository, e.g. 2026/11/24/<backup-id>/manifest.json."""

    description: str

    def writer(self, key: str) -> ObjectWriter: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def read_chunks(self, key: str) -> Iterator[bytes]: ...
    def list(self, prefix: str = "") -> list[Listed]: ...
    def delete(self, keys: list[str]) -> None: ...
    def abort_stale_uploads(self, older_than: timedelta) -> int: ...
    def location(self, key: str) -> str: ...
    def link(self, key: str) -> str: ...


class KeyOutsideRepository(ValueError):
    """A key names something outside the repository (an absolute path, `..`, a link leading out)."""


class LocalRepository:
    def __init__(self, root: str):
        self.root = Path(root)
        self.description = f"local folder {root}"

    def _path(self, key: str) -> Path:
        """Return the path of `key`. Raise KeyOutsideRepository, before anything is opened, when the key is
        absolute, has an empty, `.` or `..` part, or resolves (through links) outside the repository's
        folder: keys come from listings and from manifests, which whoever writes the repository writes."""
        body = key[:-1] if key.endswith("/") else key       # a listing's prefix ends in /
        parts = body.split("/") if body else []
        if key.startswith("/") or "\x00" in key or any(part in ("", ".", "..") for part in parts):
            raise KeyOutsideRepository(f"key {key[:80]!r} is not a relative path inside {self.description}")
        path = self.root / key
        root = os.path.realpath(self.root)
        resolved = os.path.realpath(path)
        if resolved != root and not resolved.startswith(root + os.sep):
            raise KeyOutsideRepository(f"key {key[:80]!r} leads outside {self.description} (through a link)")
        return path

    def location(self, key: str) -> str:
        """Return where the object under `key` is: its path."""
        return str(self._path(key))

    def link(self, key: str) -> str:
        """Return how to see the object under `key`: its path (a local folder has no URL)."""
        return self.location(key)

    def writer(self, key: str) -> ObjectWriter:
        return _LocalWriter(self._path(key), self.root)

    def put_bytes(self, key: str, data: bytes) -> None:
        writer = self.writer(key)
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()      # a full disk must not keep the half-written file
            raise

    def get_bytes(self, key: str) -> bytes:
        with self._open(key) as handle:
            return handle.read()

    def read_chunks(self, key: str) -> Iterator[bytes]:
        with self._open(key) as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    def _open(self, key: str):
        """Open an object for reading: a regular file, never through a final link (one swapped in after
        _path checked it would otherwise be followed)."""
        fd = os.open(self._path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        handle = os.fdopen(fd, "rb")
        if not S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise KeyOutsideRepository(f"key {key[:80]!r} in {self.description} is not a regular file")
        return handle

    def list(self, prefix: str = "") -> list[Listed]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        found = []
        for path in base.rglob("*"):
            # We never write links: one planted here (to /etc/shadow, say) is no object of ours.
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                found.append(Listed(path.relative_to(self.root).as_posix(), stat.st_size,
                                    datetime.fromtimestamp(stat.st_mtime, UTC)))
        return sorted(found, key=lambda item: item.key)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Remove emptied date folders so the tree stays readable by hand.
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def abort_stale_uploads(self, older_than: timedelta) -> int:
        return 0  # a local .partial file is an object like any other: retention removes it


def private_folders(path: Path, top: Path) -> None:
    """Create `path` and every missing folder between it and `top` as 0700, whatever the umask
    (Path.mkdir(parents=True) gives the parents the umask's mode)."""
    missing = []
    while path != top and not path.is_dir():
        missing.append(path)
        path = path.parent
    if path == top:
        top.mkdir(parents=True, exist_ok=True, mode=0o700)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        folder.chmod(0o700)


class _LocalWriter:
    """Objects, manifests and WAL in a local repository are private (0600 in 0700 folders) whatever
    the umask: what is inside is encrypted, but names, sizes and manifests are nobody else's."""

    def __init__(self, path: Path, root: Path):
        private_folders(path.parent, root)
        self.path = path
        self.partial = path.with_name(path.name + PARTIAL)
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        self.handle = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.partial, self.path)
        # The rename is durable only once the folder itself is synced ("manifest last" relies on it).
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def abort(self) -> None:
        try:
            self.handle.close()     # flushes what is buffered: on a full disk that fails again
        except OSError:
            pass
        finally:
            self.partial.unlink(missing_ok=True)


_TRANSIENT_CODES = {"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
                    "RequestTimeout", "RequestTimeTooSkewed", "Throttling", "ThrottlingException"}


def is_transient(exc: BaseException | None) -> bool:
    """Return True for S3 failures worth retrying: 5xx, throttling, dropped connections and reads cut
    short, also when wrapped in a RepositoryError. False for lasting ones: denied, missing, bad input."""
    # botocore is imported where S3 is used: a local repository (and `wal-push` into one) skips ~0.1 s.
    from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError, ResponseStreamingError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    while isinstance(exc, RepositoryError):
        exc = exc.__cause__
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        return error.get("Code") in _TRANSIENT_CODES or status.startswith("5")
    return isinstance(exc, (BotoConnectionError, HTTPClientError, ReadTimeoutError, ResponseStreamingError))


def _s3(what: str, call):
    """Make one S3 call (botocore retries it); raise RepositoryError saying what failed and after how
    many attempts."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        attempts = 1
        if isinstance(exc, ClientError):
            attempts += int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
        raise RepositoryError(f"{what} failed after {attempts} attempt(s): {exc}") from exc


@dataclass(frozen=True)
class S3Access:
    """How to reach a bucket, as plain values (what an AwsCredentials block with its client
    parameters says, without the block): for processes that do not import Prefect."""

    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    profile_name: str | None = None
    use_ssl: bool = True
    verify: bool | str | None = None        # False, or a CA bundle's path; None: botocore's default
    api_version: str | None = None

    def client(self, attempts: int = S3_ATTEMPTS):
        """Return a boto3 S3 client for these values."""
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key.get_secret_value() if self.secret_access_key else None,
            aws_session_token=self.session_token.get_secret_value() if self.session_token else None,
            profile_name=self.profile_name, region_name=self.region)
        params: dict[str, Any] = {"use_ssl": self.use_ssl, "config": s3_config(attempts)}
        params.update({k: v for k, v in (("endpoint_url", self.endpoint_url), ("verify", self.verify),
                                          ("api_version", self.api_version)) if v is not None})
        return session.client("s3", **params)


def s3_config(attempts: int = S3_ATTEMPTS) -> Config:
    """botocore's standard mode retries 5xx, throttling and connection errors with jittered
    exponential backoff (at most 20 s between attempts), and logs each retry."""
    from botocore.config import Config

    return Config(retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=10, read_timeout=120,
                  signature_version="s3v4")


class S3Repository:
    def __init__(self, bucket: str, prefix: str, client, *, part_size_mib: int = 16, sse: str | None = "AES256",
                 attempts: int = S3_ATTEMPTS):
        """A repository in `bucket` under `prefix` ('' for the bucket root) through a boto3 S3 `client`
        (made with s3_config's retries: S3Access.client, or from_block)."""
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size_mib << 20
        self.sse = sse or None
        self.attempts = attempts
        self.description = f"s3://{self.bucket}/{self.prefix}"
        self.client = client

    @classmethod
    def from_block(cls, block: BackupRepository, attempts: int = S3_ATTEMPTS) -> S3Repository:
        """The repository of an s3:// repository block, with every option of its credentials block
        (profile, assumed role, client parameters) through prefect-aws."""
        bucket = block.s3_bucket
        credentials = bucket.credentials
        params = credentials.aws_client_parameters.get_params_override()
        params["config"] = s3_config(attempts)
        client = credentials.get_boto3_session().client("s3", **params)
        return cls(bucket.bucket_name, block.prefix, client, part_size_mib=block.part_size_mib,
                   sse=block.server_side_encryption, attempts=attempts)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        """Return where the object under `key` is: s3://bucket/prefix/key."""
        return f"s3://{self.bucket}/{self._key(key)}"

    def link(self, key: str) -> str:
        """Return a presigned URL that shows the object under `key` for LINK_SECONDS."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                                                  ExpiresIn=LINK_SECONDS)

    def _extra(self) -> dict:
        return {"ServerSideEncryption": self.sse} if self.sse else {}

    def writer(self, key: str) -> ObjectWriter:
        return _S3Writer(self, self._key(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        _s3(f"upload of {key}", lambda: self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, **self._extra()))

    def get_bytes(self, key: str) -> bytes:
        return _s3(f"download of {key}", lambda: self.client.get_object(
            Bucket=self.bucket, Key=self._key(key))["Body"].read())

    def read_chunks(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        body = _s3(f"download of {key}", lambda: self.client.get_object(
            Bucket=self.bucket, Key=self._key(key))["Body"])
        try:
            yield from body.iter_chunks(CHUNK)
        except BotoCoreError as exc:      # the connection dropped mid-object: transient, the reader retries
            raise RepositoryError(f"download of {key} was cut short: {exc}") from exc

    def list(self, prefix: str = "") -> list[Listed]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                found.append(Listed(item["Key"][strip:], item["Size"], item["LastModified"]))
        return found

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            reply = _s3("delete", lambda batch=batch: self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}))
            # DeleteObjects answers 200 even when it deleted nothing: a bucket policy denying
            # s3:DeleteObject shows up only as one error per key in the reply.
            errors = (reply or {}).get("Errors") or []
            if errors:
                first = errors[0]
                raise PermissionError(f"S3 refused to delete {len(errors)} of {len(batch)} object(s) in {self.description}, "
                                      f"first {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip())

    def abort_stale_uploads(self, older_than: timedelta) -> int:
        """Abort multipart uploads under our prefix started before `older_than` ago (a crashed run's)."""
        from botocore.exceptions import ClientError

        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("")):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    try:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
                    except ClientError as exc:
                        # Completed or aborted since it was listed (wal-archive uploads all the time): gone either way.
                        if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                            raise
                        continue
                    aborted += 1
        return aborted


class _S3Writer:
    """A multipart upload fed in chunks; each part is kept in memory until S3 accepts it,
    so a transient failure retries the part, never the pg_dump that produced it."""

    def __init__(self, repo: S3Repository, key: str):
        self.repo, self.key = repo, key
        self.pending: list[bytes] = []   # chunks not yet sent; joined once per part (one copy)
        self.pending_size = 0
        self.parts: list[dict] = []
        created = _s3(f"start of upload {key}", lambda: repo.client.create_multipart_upload(
            Bucket=repo.bucket, Key=key, **repo._extra()))
        self.upload_id = created["UploadId"]

    def write(self, chunk: bytes) -> None:
        self.pending.append(chunk)
        self.pending_size += len(chunk)
        if self.pending_size >= self.repo.part_size:
            self._flush()

    def _flush(self) -> None:
        data = b"".join(self.pending)
        self.pending, self.pending_size = [], 0
        self._send(data)

    def _send(self, data: bytes) -> None:
        number = len(self.parts) + 1
        # botocore sends the part again from `data` on a 5xx or a dropped connection: the stream
        # that produced it (pg_dump | zstd | gpg) just waits.
        reply = _s3(f"upload of part {number} of {self.key}", lambda: self.repo.client.upload_part(
            Bucket=self.repo.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data))
        self.parts.append({"PartNumber": number, "ETag": reply["ETag"]})

    def commit(self) -> None:
        if self.pending or not self.parts:
            self._flush()
        _s3(f"completion of {self.key}", lambda: self.repo.client.complete_multipart_upload(
            Bucket=self.repo.bucket, Key=self.key, UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts}))

    def abort(self) -> None:
        self.pending, self.pending_size = [], 0
        try:
            _s3(f"abort of {self.key}", lambda: self.repo.client.abort_multipart_upload(
                Bucket=self.repo.bucket, Key=self.key, UploadId=self.upload_id))
        except RepositoryError as exc:
            logger().warning("could not abort multipart upload of %s (%s); the next backup's clean-up will", self.key, exc)


def open_repository(block: BackupRepository, attempts: int = S3_ATTEMPTS) -> Repository:
    """Given the repository block, return the repository it describes (S3: `attempts` per request)."""
    return S3Repository.from_block(block, attempts) if block.is_s3 else LocalRepository(block.url)
