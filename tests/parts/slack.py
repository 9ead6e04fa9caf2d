"""Stands in for Slack's incoming webhook."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from tests.parts._server import _Server


class _SlackHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Keep the test output free of one line per request."""

    def do_POST(self) -> None:
        receiver: SlackReceiver = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver.raw.append(body)
        try:
            receiver.posts.append(json.loads(body))
        except json.JSONDecodeError:
            receiver.unparsable += 1
        status = receiver.status
        reply = b"ok" if status == 200 else b"rate_limited" if status == 429 else b"error"
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "30")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class SlackReceiver(_Server):
    """Stands in for Slack's incoming webhook; records every payload."""

    handler = _SlackHandler

    def __init__(self, status: int = 200):
        self.status = status
        self.posts: list[dict] = []
        self.raw: list[bytes] = []
        self.unparsable = 0

    def webhook(self, token: str = "T000/B000/XXXX") -> str:
        return f"{self.url}/services/{token}"

    def full_texts(self) -> list[str]:
        """Each post's whole text: its headline and every block's text, one per line."""
        return ["\n".join([post.get("text", "")] + [b.get("text", {}).get("text", "") for b in post.get("blocks", [])
                                                   if isinstance(b.get("text"), dict)]) for post in self.posts]

    def texts(self) -> list[str]:
        return [p.get("text", "") for p in self.posts]

