"""A misbehaving HTTP proxy in front of S3 (moto's server): fails chosen requests on demand."""

from __future__ import annotations

import http.client
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.parts._server import _Server


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        """Keep the test output free of one line per request."""

    def _forward(self) -> None:
        proxy: FaultyProxy = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        proxy.requests.append((self.command, self.path))
        if proxy.deny_batch_deletes and self.command == "POST" and "?delete" in self.path:
            # What real S3 does when a bucket policy denies s3:DeleteObject: 200, one error per key.
            keys = re.findall(rb"<Key>(.*?)</Key>", body)
            errors = b"".join(b"<Error><Key>" + k + b"</Key><Code>AccessDenied</Code><Message>Access Denied</Message>"
                              b"</Error>" for k in keys)
            reply = b'<?xml version="1.0" encoding="UTF-8"?><DeleteResult>' + errors + b"</DeleteResult>"
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        failure = proxy.failure(self.command, self.path)
        if failure:
            error = f"<Error><Code>{failure[1]}</Code><Message>injected by test</Message></Error>".encode()
            self.send_response(failure[0])
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        upstream = urlsplit(proxy.upstream)
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
        conn.request(self.command, self.path, body=body, headers=headers)
        reply = conn.getresponse()
        payload = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


class FaultyProxy(_Server):
    """Forwards to an S3 endpoint; answers 503 to chosen requests.

    `fail_next(n, method, marker)`: the next n matching requests fail. `fail_always(...)`:
    every matching request fails, as when the endpoint is gone for writes. `fail_for(seconds, ...)`:
    every matching request fails from now for that long (an outage; method None: every method). All
    take `status` and `code` (default 503 ServiceUnavailable; e.g. 403 AccessDenied for a denied
    DeleteObjects, method POST, marker "?delete"). `deny_batch_deletes = True`: every DeleteObjects
    answers 200 with an AccessDenied error per key, as S3 does under a bucket policy that denies
    s3:DeleteObject. `clear()` drops every rule.
    """

    handler = _ProxyHandler

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.requests: list[tuple[str, str]] = []
        self.deny_batch_deletes = False
        self._rules: list[list] = []
        self._lock = threading.Lock()

    def fail_next(self, count: int, method: str = "PUT", marker: str = "partNumber", status: int = 503,
                  code: str = "ServiceUnavailable") -> None:
        self._rules.append([method, marker, count, status, code])

    def fail_always(self, method: str = "PUT", marker: str = "", status: int = 503,
                    code: str = "ServiceUnavailable") -> None:
        self._rules.append([method, marker, None, status, code])

    def fail_for(self, seconds: float, method: str | None = None, marker: str = "", status: int = 503,
                 code: str = "SlowDown") -> float:
        """Fail every matching request for `seconds` from now; return when the outage ends (time.monotonic())."""
        until = time.monotonic() + seconds
        with self._lock:
            self._rules.append([method, marker, None, status, code, until])
        return until

    def clear(self) -> None:
        """Forward everything again: every rule (outages included) is dropped."""
        with self._lock:
            self._rules.clear()

    def should_fail(self, method: str, path: str) -> bool:
        return self.failure(method, path) is not None

    def failure(self, method: str, path: str) -> tuple[int, str] | None:
        """Return (status, error code) when this request is to fail, counting it, else None."""
        with self._lock:
            for rule in self._rules:
                if len(rule) > 5 and time.monotonic() >= rule[5]:
                    continue                    # an outage that is over
                if rule[0] in (method, None) and rule[1] in path and (rule[2] is None or rule[2] > 0):
                    if rule[2] is not None:
                        rule[2] -= 1
                    return rule[3], rule[4]
        return None

