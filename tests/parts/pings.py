"""Stands in for a Healthchecks.io check."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from tests.parts._server import _Server


class _PingHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Keep the test output free of one line per request."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.owner.pings.append((self.path, body.decode(errors="replace")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")


class PingReceiver(_Server):
    """Stands in for a Healthchecks.io check: records (path, body) of every ping."""

    handler = _PingHandler

    def __init__(self):
        self.pings: list[tuple[str, str]] = []

