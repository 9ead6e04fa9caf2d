"""The retry_condition_fn of every retried task: transient failures are retried, lasting ones never.
And the Slack post's retries stay within a few seconds."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ResponseStreamingError
from prefect.states import Failed
from pydantic import SecretStr

from ubertruck_ops.blocks.slack import SlackNotices
from ubertruck_ops.tasks import catalog, git, load, notify, npm, wal
from ubertruck_ops.tasks.execute import CommandFailed
from ubertruck_ops.tasks.repository import RepositoryError, is_transient
from ubertruck_ops.tasks.retrying import failure_of, retry_when


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


def wrapped(exc: BaseException) -> RepositoryError:
    try:
        raise RepositoryError(f"download failed: {exc}") from exc
    except RepositoryError as error:
        return error


def retried(task, exc: BaseException) -> bool:
    return task.retry_condition_fn(task, None, Failed(data=exc))


def test_a_failed_state_gives_its_exception_and_the_condition_asks_the_rule():
    boom = ValueError("x")
    assert failure_of(Failed(data=boom)) is boom
    assert retry_when(lambda e: isinstance(e, ValueError))(None, None, Failed(data=boom))
    assert not retry_when(lambda e: False)(None, None, Failed(data=boom))


@pytest.mark.parametrize("exc, transient", [
    (client_error(503, "ServiceUnavailable"), True),
    (client_error(500, "InternalError"), True),
    (client_error(400, "SlowDown"), True),
    (EndpointConnectionError(endpoint_url="http://s3"), True),
    (ResponseStreamingError(error="connection reset"), True),
    (client_error(403, "AccessDenied"), False),
    (client_error(404, "NoSuchKey"), False),
    (FileNotFoundError("gone"), False),
])
def test_s3_reads_retry_only_what_passes(exc, transient):
    assert is_transient(exc) is transient
    assert is_transient(wrapped(exc)) is transient
    for task in (catalog.find_backup, wal.fetch_segments, load.read_roles):
        assert retried(task, wrapped(exc)) is transient, task.name


def test_verification_is_retried_only_when_every_problem_was_a_passing_read_failure():
    unreadable = load.BackupCorrupt("backup x is damaged: database.dump.zst.gpg: cannot be read (RepositoryError)")
    unreadable.unreadable_only = True
    damaged = load.BackupCorrupt("backup x is damaged: database.dump.zst.gpg: stored bytes do not match the manifest")
    assert retried(load.verify_objects, unreadable)
    assert not retried(load.verify_objects, damaged)
    assert retried(load.verify_objects, wrapped(client_error(503, "ServiceUnavailable")))


def test_a_release_fetch_is_retried_on_a_network_failure_never_on_a_missing_tag():
    network = CommandFailed("git clone", 128, "fatal: unable to access 'x': Could not resolve host: github.com")
    missing = CommandFailed("git clone", 128, "fatal: Remote branch v9.9.9 not found in upstream origin")
    assert retried(git.check_out, network)
    assert not retried(git.check_out, missing)
    assert not retried(git.check_out, ValueError("Could not resolve host"))


def test_npm_is_retried_on_a_registry_failure_never_on_a_broken_release_or_build():
    registry = npm.BuildFailed("npm ci failed in fleet-service: 503", stderr="npm error code E503\nnpm error 503")
    lock = npm.BuildFailed("npm ci failed in fleet-service", stderr="npm error `npm ci` can only install packages "
                           "when your package.json and package-lock.json are in sync")
    build = npm.BuildFailed("npm run build failed in user-service: ETIMEDOUT in a test", stderr="")
    tests = npm.TestsFailed("npm test failed in user-service; ... npm error 503 in a test's output")
    assert retried(npm.build_package, registry)
    assert not retried(npm.build_package, lock)
    assert not retried(npm.build_package, build)
    assert not retried(npm.build_package, tests)


def test_what_must_not_be_repeated_has_no_retries():
    from ubertruck_ops.tasks import pm2, release

    for task in (npm.run_migrations, npm.audit_package, pm2.hand_over, release.switch_current,
                 load.restore_database):
        assert task.retries == 0 and task.retry_condition_fn is None, task.name


class _Answer(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Keep the test output free of one line per request."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits += 1
        status, retry_after = self.server.answer
        self.send_response(status)
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"no")


@pytest.fixture()
def slack_server():
    server = HTTPServer(("127.0.0.1", 0), _Answer)
    server.hits = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.mark.parametrize("answer, attempts", [((429, "30"), 1), ((429, "1"), 2), ((503, None), 3), ((500, None), 3),
                                              ((400, None), 1)])
def test_a_slack_post_retries_within_a_few_seconds_and_never_raises(slack_server, answer, attempts):
    slack_server.answer = answer
    block = SlackNotices(webhook_url=SecretStr(f"http://127.0.0.1:{slack_server.server_port}/services/T/B/X"))
    started = time.monotonic()
    assert notify.notify.fn(block, {"text": "nightly backup completed"}) is False
    assert slack_server.hits == attempts
    assert time.monotonic() - started < 4
