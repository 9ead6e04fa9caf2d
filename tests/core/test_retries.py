"""core/retries.py: which failures are worth another attempt."""

from __future__ import annotations

import pytest

from ubertruck_ops.core.retries import git_failure_is_transient, npm_failure_is_transient, slack_retry_wait


@pytest.mark.parametrize("stderr", [
    "fatal: unable to access 'https://github.com/u/app.git/': Could not resolve host: github.com",
    "error: RPC failed; curl 56 GnuTLS recv error (-9)\nfatal: early EOF",
    "fatal: the remote end hung up unexpectedly",
    "fatal: unable to access 'https://git.example/app.git/': The requested URL returned error: 503",
    "ssh: connect to host github.com port 22: Connection timed out",
])
def test_a_git_network_failure_is_transient(stderr):
    assert git_failure_is_transient(stderr)


@pytest.mark.parametrize("stderr", [
    "warning: Could not find remote branch v9.9.9 to clone.\nfatal: Remote branch v9.9.9 not found in upstream origin",
    "fatal: Authentication failed for 'https://git.example/app.git/'",
    "git@github.com: Permission denied (publickey).\nfatal: Could not read from remote repository.",
    "remote: Repository not found.\nfatal: repository 'https://github.com/u/gone.git/' not found",
    "fatal: destination path '/opt/ubertruck/releases/.v1.2.0' already exists and is not an empty directory.",
    "fatal: something nobody has seen before",
])
def test_a_lasting_git_failure_is_not_retried(stderr):
    assert not git_failure_is_transient(stderr)


@pytest.mark.parametrize("stderr", [
    "npm error code ETIMEDOUT\nnpm error network request to https://npm.registry.internal/left-pad failed",
    "npm error code ECONNRESET\nnpm error network aborted",
    "npm error code E503\nnpm error 503 Service Unavailable - GET https://npm.registry.internal/left-pad",
    "npm error code EAI_AGAIN\nnpm error request to https://npm.registry.internal/x failed, reason: getaddrinfo EAI_AGAIN",
])
def test_an_npm_registry_or_network_failure_is_transient(stderr):
    assert npm_failure_is_transient(stderr)


@pytest.mark.parametrize("stderr", [
    "npm error code EUSAGE\nnpm error `npm ci` can only install packages when your package.json and "
    "package-lock.json or npm-shrinkwrap.json are in sync.",
    "npm error code E404\nnpm error 404 Not Found - GET https://npm.registry.internal/no-such-package",
    "npm error code E401\nnpm error Unable to authenticate",
    "",
])
def test_a_broken_release_or_refused_login_is_not_retried(stderr):
    assert not npm_failure_is_transient(stderr)


def test_slack_is_waited_for_only_on_a_short_429():
    assert slack_retry_wait(429, "1", 2.0) == 1.0
    assert slack_retry_wait(429, None, 2.0) == 1.0
    assert slack_retry_wait(429, "30", 2.0) is None, "a long Retry-After would hold up the job"
    assert slack_retry_wait(429, "soon", 2.0) is None
    assert slack_retry_wait(200, None, 2.0) is None
    assert slack_retry_wait(404, "1", 2.0) is None
