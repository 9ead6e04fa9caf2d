"""Block documents read from the Prefect API over plain HTTP, for processes that must not import
Prefect (`ubertruck-ops wal-push`; importing Prefect alone costs ~1.5 s).

The API is the one in PREFECT_API_URL; PREFECT_API_AUTH_STRING is sent as HTTP basic auth and
PREFECT_API_KEY as a bearer token, as Prefect's own client does. With a PREFECT_API_URL on this
machine and no auth string, the one `ubertruck-ops serve` keeps under PREFECT_HOME is used, as
`deployments/api.py` does for the other commands. Redirects are refused, so the credentials go
only where PREFECT_API_URL says. Each connection is checked before the request is written: when the
server's end is on this host it must belong to a user we trust (tasks/api_identity.py), or nothing
is sent and no answer believed. Nested blocks (an S3 bucket block inside the repository block)
come back inline, as plain JSON objects.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ubertruck_ops.tasks.api_identity import AUTH_FILE, check_connection, needs_check, trusted_users

TIMEOUT_SECONDS = 15
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class ApiNotConfigured(ValueError):
    """No PREFECT_API_URL: there is no API to read blocks from."""


class ApiUnavailable(RuntimeError):
    """The Prefect API did not answer, refused the credentials, or is not a Prefect API."""


class BlockMissing(LookupError):
    """No block document of that type and name."""


@dataclass(frozen=True)
class Api:
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)    # holds the credentials
    context: ssl.SSLContext | None = field(default=None, repr=False)
    # {uid: why}: who may hold the API's address when it is on this host; None: read it at request time
    trusted: Mapping[int, str] | None = field(default=None, repr=False)
    checked: bool = True            # plain http, or https without certificate checks


def api_from_environment(environ: Mapping[str, str] | None = None, what: str = "this command") -> Api:
    """Return the API of PREFECT_API_URL with its credentials. Raise ApiNotConfigured saying what to set."""
    environ = os.environ if environ is None else environ
    url = (environ.get("PREFECT_API_URL") or "").strip().rstrip("/")
    if not url:
        raise ApiNotConfigured(
            f"PREFECT_API_URL is not set: {what} reads its blocks from a running Prefect API and never starts "
            "one of its own; set PREFECT_API_URL (and PREFECT_API_AUTH_STRING when the server requires it) in its "
            "environment, e.g. archive_command = 'PREFECT_API_URL=http://127.0.0.1:4200/api ubertruck-ops wal-push %p'")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ApiNotConfigured(f"PREFECT_API_URL must be an http(s) URL such as http://127.0.0.1:4200/api, not {url!r}")
    headers = {"Accept": "application/json"}
    # The local string goes only to this host's loopback names, never to a URL naming another host.
    auth = environ.get("PREFECT_API_AUTH_STRING") or (_local_auth_string(environ) if parsed.hostname in LOCAL_HOSTS
                                                      else None)
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    elif environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {environ['PREFECT_API_KEY']}"
    context = None
    if parsed.scheme == "https":
        context = ssl.create_default_context(cafile=environ.get("PREFECT_API_SSL_CERT_FILE") or None)
        if (environ.get("PREFECT_API_TLS_INSECURE_SKIP_VERIFY") or "").lower() in ("1", "true", "yes"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return Api(url, headers, context, trusted_users(environ, _auth_file(environ)), needs_check(url, environ))


def _auth_file(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("PREFECT_HOME") or "~/.prefect").expanduser() / AUTH_FILE


def _local_auth_string(environ: Mapping[str, str]) -> str | None:
    """The auth string `serve` keeps in PREFECT_HOME/api-auth-string (0600, ours), or None."""
    try:
        fd = os.open(_auth_file(environ), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return None
        return os.read(fd, 4096).decode().strip() or None
    finally:
        os.close(fd)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib's hook
        return None     # urllib would forward the Authorization header to wherever the reply points


class _CheckedConnection(http.client.HTTPConnection):
    """An HTTP connection that checks who holds the other end once connected, before writing a byte:
    the check runs on the very socket the request then uses, so no one can slip in between."""

    def __init__(self, *args, check, **kwargs):
        super().__init__(*args, **kwargs)
        self._check = check

    def connect(self) -> None:
        super().connect()
        try:
            self._check(self.sock)
        except BaseException:
            self.sock.close()
            self.sock = None
            raise


class _CheckedConnectionSecure(http.client.HTTPSConnection):
    """The same for https without certificate checks (PREFECT_API_TLS_INSECURE_SKIP_VERIFY)."""

    def __init__(self, *args, check, **kwargs):
        super().__init__(*args, **kwargs)
        self._check = check

    def connect(self) -> None:
        # HTTPSConnection.connect wraps the socket in TLS at once (sending its hello): check first.
        http.client.HTTPConnection.connect(self)
        try:
            self._check(self.sock)
        except BaseException:
            self.sock.close()
            self.sock = None
            raise
        server_hostname = self._tunnel_host or self.host
        self.sock = self._context.wrap_socket(self.sock, server_hostname=server_hostname)


class _CheckedHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    def __init__(self, api: Api):
        urllib.request.HTTPHandler.__init__(self)
        urllib.request.HTTPSHandler.__init__(self, context=api.context)
        trusted = api.trusted if api.trusted is not None else trusted_users()
        self._check = functools.partial(check_connection, url=api.url, trusted=trusted)

    def http_open(self, req):
        return self.do_open(functools.partial(_CheckedConnection, check=self._check), req)

    def https_open(self, req):
        return self.do_open(functools.partial(_CheckedConnectionSecure, check=self._check), req,
                            context=self._context)


def _opener(api: Api) -> urllib.request.OpenerDirector:
    handlers = [_NoRedirect, _CheckedHandler(api) if api.checked else urllib.request.HTTPSHandler(context=api.context)]
    return urllib.request.build_opener(*handlers)


def read_block_data(api: Api, slug: str, name: str) -> dict[str, Any]:
    """Return the data of block document `slug`/`name`, secrets and nested blocks included.

    Raise BlockMissing when there is no such document, ApiUnavailable when the API does not answer,
    refuses the credentials (401/403) or answers something other than a block document.
    """
    path = f"/block_types/slug/{urllib.parse.quote(slug, safe='')}/block_documents/name/" \
           f"{urllib.parse.quote(name, safe='')}?include_secrets=true"
    request = urllib.request.Request(api.url + path, headers=dict(api.headers))
    opener = _opener(api)
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as reply:
            body = reply.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(api, exc, slug, name) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiUnavailable(f"the Prefect API at {api.url} is unreachable ({reason}): is the server running, "
                             "and is PREFECT_API_URL right?") from None
    try:
        document = json.loads(body)
        data = document["data"]
    except (ValueError, KeyError, TypeError):
        raise ApiUnavailable(f"{api.url} answered something other than a block document for {slug}/{name}: "
                             "is PREFECT_API_URL a Prefect API (it ends in /api)?") from None
    if not isinstance(data, dict):
        raise ApiUnavailable(f"block {slug}/{name} holds no fields")
    return data


def _http_error(api: Api, exc: urllib.error.HTTPError, slug: str, name: str) -> Exception:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    if exc.code in (401, 403):
        given = "the credentials given were refused" if "Authorization" in api.headers else "no credentials were given"
        return ApiUnavailable(f"the Prefect API at {api.url} answered HTTP {exc.code} ({given}): set "
                              "PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING "
                              "(or PREFECT_API_KEY for Prefect Cloud)")
    if exc.code == 404 and detail == "Block document not found":
        return BlockMissing(f"block {slug}/{name} not found")
    if exc.code in (301, 302, 303, 307, 308):
        return ApiUnavailable(f"the Prefect API at {api.url} redirects elsewhere (HTTP {exc.code}); redirects are not "
                              "followed: set PREFECT_API_URL to the final address")
    return ApiUnavailable(f"the Prefect API at {api.url} answered HTTP {exc.code} for block {slug}/{name}"
                          + (f" ({detail})" if isinstance(detail, str) else "")
                          + (": is PREFECT_API_URL a Prefect API (it ends in /api)?" if exc.code == 404 else ""))
