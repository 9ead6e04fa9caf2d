"""Stands in for PagerDuty's Events API v2 (`/v2/enqueue`): checks every body the way PagerDuty
does (a 400 with the reason when it is not a valid event) and records the valid ones."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from tests.parts._server import _Server

_SEVERITIES = {"critical", "error", "warning", "info"}


def invalid(body: object) -> str | None:
    """Why PagerDuty would refuse `body`, or None when it is a valid v2 event."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if not body.get("routing_key") or not isinstance(body["routing_key"], str):
        return "routing_key missing"
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        return f"event_action {action!r} is not trigger, acknowledge or resolve"
    if action != "trigger":
        return None if body.get("dedup_key") else "dedup_key is required to acknowledge or resolve"
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return "payload missing"
    for name in ("summary", "source", "severity"):
        if not payload.get(name):
            return f"payload.{name} missing"
    if payload["severity"] not in _SEVERITIES:
        return f"payload.severity {payload['severity']!r} is not one of {sorted(_SEVERITIES)}"
    if len(payload["summary"]) > 1024:
        return "payload.summary is longer than 1024 characters"
    return None


class _PagerDutyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Keep the test output free of one line per request."""

    def do_POST(self) -> None:
        receiver: PagerDutyReceiver = self.server.owner
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver.raw.append(raw)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = None
        why = invalid(body) if receiver.status == 202 else "down"
        if why is None:
            receiver.events.append(body)
            status, reply = 202, {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")}
        elif receiver.status != 202:
            status, reply = receiver.status, {"status": "unavailable"}
        else:
            receiver.refused.append(why)
            status, reply = 400, {"status": "invalid event", "message": "Event object is invalid", "errors": [why]}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class PagerDutyReceiver(_Server):
    """A PagerDuty Events API v2 stand-in; `status` other than 202 answers every event with it."""

    handler = _PagerDutyHandler

    def __init__(self, status: int = 202):
        self.status = status
        self.events: list[dict] = []
        self.refused: list[str] = []
        self.raw: list[bytes] = []

    @property
    def events_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    def actions(self) -> list[tuple[str, str]]:
        return [(e["event_action"], e.get("dedup_key", "")) for e in self.events]
