"""Which failures are worth another attempt: pure rules over what a tool said.

A retry helps only when the failure passes (the network dropped, a server was briefly busy) and
the step is idempotent. A lasting failure (authentication, a missing tag, a lock file out of sync,
a build error) fails at once: retrying it only delays the notice that someone must act.
"""

from __future__ import annotations

import re

# git over https or ssh: the connection, not the request, failed.
_GIT_TRANSIENT = re.compile(
    r"could not resolve host|connection (timed out|reset|refused)|operation timed out|early eof|"
    r"rpc failed|the remote end hung up unexpectedly|unexpected disconnect|gnutls_handshake|"
    r"ssl_read|ssl_connect|curl \d+ .*(timed out|reset|recv failure)|returned error: 5\d\d|"
    r"http/2 stream \d+ was not closed cleanly|temporary failure in name resolution|"
    r"ssh: connect to host .* (timed out|refused)|connection closed by remote host",
    re.IGNORECASE)
_GIT_PERMANENT = re.compile(
    r"authentication failed|permission denied|could not read username|repository .* not found|"
    r"remote branch .* not found|not found in upstream|returned error: 40[134]|host key verification failed|"
    r"already exists and is not an empty directory",
    re.IGNORECASE)

# npm: registry or network trouble; an exit for any other reason (lock out of sync, E404, a failing
# build script) is the release's fault.
_NPM_TRANSIENT = re.compile(
    r"\b(ETIMEDOUT|ECONNRESET|ECONNREFUSED|EAI_AGAIN|ESOCKETTIMEDOUT|EPIPE|ENETUNREACH|EHOSTUNREACH)\b|"
    r"\bE(500|502|503|504|429)\b|socket hang up|network timeout|request to \S+ failed|"
    r"network request to \S+ failed|unexpected end of (file|json input) while parsing",
    re.IGNORECASE)
_NPM_PERMANENT = re.compile(
    r"\bE(401|403|404|NOTARGET|INTEGRITY|USAGE|LOCK)\b|can only install packages when your package\.json and "
    r"package-lock\.json|npm ci.*in sync|missing: .* from lock file|invalid: .* from lock file",
    re.IGNORECASE)


def git_failure_is_transient(stderr: str) -> bool:
    """Given git's stderr from a failed clone or fetch, return True when the network failed (worth
    another attempt), False for a lasting failure: credentials, a missing repository or tag."""
    if _GIT_PERMANENT.search(stderr):
        return False
    return bool(_GIT_TRANSIENT.search(stderr))


def npm_failure_is_transient(stderr: str) -> bool:
    """Given npm's stderr from a failed `npm ci`, return True when the registry or the network
    failed (worth another attempt), False for a lasting failure of the release itself."""
    if _NPM_PERMANENT.search(stderr):
        return False
    return bool(_NPM_TRANSIENT.search(stderr))


def slack_retry_wait(status: int | None, retry_after: str | None, limit_seconds: float) -> float | None:
    """Given Slack's answer to a notice (None: no answer) and its Retry-After header, return how
    long to wait before sending it again, or None not to: only a 429 whose Retry-After is within
    `limit_seconds` is worth waiting for (a notice must never hold up its job)."""
    if status != 429:
        return None
    try:
        wait = float(retry_after) if retry_after is not None else 1.0
    except ValueError:
        return None
    return wait if 0 <= wait <= limit_seconds else None
