"""Streams between command pipelines and repository objects, checksummed on the way.

Backups: pipeline stdout -> SHA-256 -> repository writer, in 1 MiB chunks, so memory
stays flat whatever the database size. Restores: repository -> SHA-256 -> pipeline
stdin. The repository object only becomes visible once every stage exited 0: a
pg_dump killed mid-stream still leaves gpg a clean EOF, so exit codes are the truth.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ubertruck_ops.tasks.execute import CommandFailed, Pipeline, Stage
from ubertruck_ops.tasks.repository import CHUNK, Repository

DEFAULT_TIMEOUT = 6 * 3600


@dataclass(frozen=True)
class Written:
    size: int
    sha256: str


class ChecksumMismatch(RuntimeError):
    """A stored object's bytes do not match the manifest."""


def store_stream(repo: Repository, key: str, stages: Sequence[Stage], *, feed: bytes | Iterable[bytes] | None = None,
                 source: Sequence[Stage] | None = None, tap: Callable[[bytes], None] | None = None,
                 on_progress: Callable[[int], None] | None = None, cwd=None,
                 timeout: float = DEFAULT_TIMEOUT) -> Written:
    """Run `stages`, store the last stage's output under `key`, return its size and SHA-256.

    Their input is `feed` (bytes, or chunks that may arrive later: the stages start at once),
    or the output of the `source` stages passed through `tap` (which sees the plaintext
    stream in memory, e.g. to pick a member out of a tar stream).
    Raise CommandFailed (and leave no object) when any stage fails.
    """
    writer = repo.writer(key)
    digest, size = hashlib.sha256(), 0
    last_report = 0.0
    producer = Pipeline(source) if source else None
    try:
        with Pipeline(stages, feed_stdin=feed is not None or producer is not None, cwd=cwd) as pipe:
            if isinstance(feed, (bytes, bytearray, memoryview)):
                chunks = [feed]
            elif feed is not None:
                chunks = feed
            else:
                chunks = _tapped(producer.stdout, tap) if producer else None
            feeder = _start_feeder(pipe, chunks)
            stdout = pipe.stdout
            while chunk := stdout.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
                if on_progress and time.monotonic() - last_report > 2:
                    last_report = time.monotonic()
                    on_progress(size)
            if feeder:
                feeder.join()
                if feeder.error:
                    raise feeder.error
            if producer:
                # The producer first: a source that died mid-stream still gave the rest a clean EOF.
                producer.wait(timeout)
            pipe.wait(timeout)
        writer.commit()
    except BaseException:
        if producer:
            producer.kill()
        writer.abort()
        raise
    finally:
        if producer:
            producer.__exit__(None, None, None)
    return Written(size, digest.hexdigest())


def _tapped(stream, tap: Callable[[bytes], None] | None):
    while chunk := stream.read(CHUNK):
        if tap:
            tap(chunk)
        yield chunk


def load_stream(repo: Repository, key: str, expected_sha256: str, stages: Sequence[Stage], *, capture: bool = False,
                timeout: float = DEFAULT_TIMEOUT, max_capture: int = 64 << 20) -> bytes:
    """Feed the object under `key` through `stages`; return their output when `capture`.

    Raise ChecksumMismatch when the bytes read differ from `expected_sha256`, and
    CommandFailed when a stage fails.
    """
    digest = hashlib.sha256()

    def chunks():
        for chunk in repo.read_chunks(key):
            digest.update(chunk)
            yield chunk

    output = bytearray()
    with Pipeline(stages, feed_stdin=True, stdout=subprocess.PIPE if capture else subprocess.DEVNULL) as pipe:
        feeder = _start_feeder(pipe, chunks())
        if capture:
            while chunk := pipe.stdout.read(CHUNK):
                output += chunk
                if len(output) > max_capture:
                    pipe.kill()
                    raise RuntimeError(f"{key} decodes to more than {max_capture} bytes")
        feeder.join()
        try:
            pipe.wait(timeout)
        except CommandFailed as failed:
            if feeder.error:
                raise feeder.error from failed
            raise
        if feeder.error:
            raise feeder.error
    if digest.hexdigest() != expected_sha256:
        raise ChecksumMismatch(f"{key}: SHA-256 of the stored bytes does not match the manifest")
    return bytes(output)


def checksum(repo: Repository, key: str) -> Written:
    """Return size and SHA-256 of a stored object, read in chunks."""
    digest, size = hashlib.sha256(), 0
    for chunk in repo.read_chunks(key):
        digest.update(chunk)
        size += len(chunk)
    return Written(size, digest.hexdigest())


class _Feeder(threading.Thread):
    """Writes chunks into the first stage's stdin so the caller can read the last stage's stdout."""

    def __init__(self, pipe: Pipeline, chunks):
        super().__init__(daemon=True)
        self.pipe, self.chunks, self.error = pipe, chunks, None

    def run(self) -> None:
        stdin = self.pipe.stdin
        try:
            for chunk in self.chunks:
                stdin.write(chunk)
        except BrokenPipeError:
            pass  # a stage downstream died; Pipeline.wait reports which
        except BaseException as exc:  # noqa: BLE001 - a failed read must fail the restore
            self.error = exc
            self.pipe.kill()
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass


def _start_feeder(pipe: Pipeline, chunks) -> _Feeder | None:
    if chunks is None:
        return None
    feeder = _Feeder(pipe, chunks)
    feeder.start()
    return feeder
