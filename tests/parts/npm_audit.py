"""A stand-in for npm's bulk advisory endpoint (`POST /-/npm/v1/security/advisories/bulk`), which
`npm audit --registry URL` asks: it answers the advisories it was given for the packages asked
about, records each request, and answers 404 to everything else (npm then only reports no fix)."""

from __future__ import annotations

import gzip
import json
from http.server import BaseHTTPRequestHandler

from tests.parts._server import _Server

BULK = "/-/npm/v1/security/advisories/bulk"


class _AuditHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Keep the test output free of one line per request."""

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        if self.path.split("?")[0] != BULK:
            return self._answer(404)
        asked = json.loads(raw or b"{}")
        self.server.owner.requests.append(asked)
        advisories = self.server.owner.advisories
        return self._answer(200, json.dumps({name: advisories[name] for name in asked if name in advisories}).encode())

    def do_GET(self) -> None:
        self._answer(404)


class NpmAuditEndpoint(_Server):
    """`advisories`: package name -> advisories in the endpoint's shape (id, url, title, severity,
    vulnerable_versions, cwe, cvss)."""

    handler = _AuditHandler

    def __init__(self, advisories: dict[str, list[dict]] | None = None):
        self.advisories = advisories or {}
        self.requests: list[dict] = []


def advisory(title: str, severity: str, vulnerable_versions: str = "<99.0.0") -> dict:
    return {"id": abs(hash(title)) % 100000, "url": "https://advisories.invalid/" + title.replace(" ", "-"),
            "title": title, "severity": severity, "vulnerable_versions": vulnerable_versions, "cwe": [],
            "cvss": {"score": 7.5}}
