"""`ubertruck-ops watch` on real parts: Debian's nginx in front of a service that answers 500 for
a share of requests (the error-rate rule of the guide's 7.3 from the access log, rotation
included), and the access-log reader across rotation. The PM2 case (a killed service -> one
critical notice, then a recovery notice, as Prefect events too) is in tests/test_checklists.py,
which has the live services."""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ubertruck_ops.blocks.environment import load_environment
from ubertruck_ops.blocks.monitoring import CheckThresholds
from ubertruck_ops.blocks.repository import BackupRepository
from ubertruck_ops.operations.watch import Watch
from ubertruck_ops.tasks.access_log import AccessLog

from tests.helpers import require, save_env
from tests.parts import NginxBalancer


class FailingService:
    """Answers 500 on /fail..., 200 elsewhere."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                """Keep the test output free of one line per request."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _send(port: int, total: int, failing: int, headers: dict | None = None) -> None:
    for number in range(total):
        path = "/fail" if number < failing else "/ok"
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
            urllib.request.urlopen(request, timeout=5).read()
        except urllib.error.HTTPError as answer:
            assert answer.code == 500


@pytest.fixture
def behind_nginx(tmp_path):
    service = FailingService()
    log = tmp_path / "access.log"
    try:
        balancer = NginxBalancer(tmp_path, {"app": {"web-1": f"127.0.0.1:{service.port}"}}, access_log=str(log))
    except RuntimeError as missing:
        require(False, str(missing))
    balancer.start()
    yield balancer, log
    balancer.stop()
    service.stop()


def test_the_error_rate_through_nginx_alerts_above_ten_percent_and_not_at_three(behind_nginx, source_db, local_repo,
                                                                              slack):
    balancer, log = behind_nginx
    port = balancer.ports["app"]
    env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook())
    # CPU thresholds out of reach: the other xdist workers' load is not what this test is about, and a
    # cpu notice would add a line to `said` and to Slack.
    limits = CheckThresholds(disk_paths=[], access_log=str(log), watch_rounds_to_alert=2, cpu_high_pct=101,
                             cpu_medium_pct=101)
    watcher = Watch(env, load_environment(env), limits)
    watcher.round()                                   # starts at the log's end

    _send(port, 100, 3)                               # 3% 5xx: fine
    assert [watcher.round(), watcher.round()] == [[], []]
    assert watcher.requests and all(r.status in (200, 500) for r in watcher.requests)

    rotated = log.with_name("access.log.1")           # logrotate's move, then nginx reopens (USR1)
    os.rename(log, rotated)
    os.kill(int((balancer.prefix / "nginx.pid").read_text()), 10)
    _send(port, 100, 40)                              # now 43 of 200 in five minutes: 21.5%
    said = watcher.round() + watcher.round()
    down = [t for t in said if t.target == "error rate and response time"]
    assert [t.kind for t in down] == ["down"] and down[0].severity == "critical", said
    assert "21.5% 5xx" in down[0].detail, down[0].detail
    posted = [p["text"] for p in slack.posts]
    assert any("CRITICAL: error rate and response time is DOWN" in text for text in posted), posted
    assert watcher.access_log.unparsed == 0


def test_the_access_log_reader_keeps_lines_across_rotation_and_truncation_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "access.log"
    line = '10.0.0.1 - - [02/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" {status} 2 "-" "t" 0.010\n'
    path.write_text(line.format(status=200))
    reader = AccessLog(str(path))
    assert reader.read_new() == []                    # what came before is not news
    with open(path, "a") as handle:
        handle.write(line.format(status=500) + line.format(status=502)[:30])
    assert [r.status for r in reader.read_new()] == [500]
    with open(path, "a") as handle:
        handle.write(line.format(status=502)[30:])
    os.rename(path, tmp_path / "access.log.1")
    path.write_text(line.format(status=503))
    assert [r.status for r in reader.read_new()] == [502, 503]
    path.write_text("")                               # copytruncate
    assert reader.read_new() == []
    with open(path, "a") as handle:
        handle.write(line.format(status=504) + "not our format\n")
    assert [r.status for r in reader.read_new()] == [504] and reader.unparsed == 1


def test_requests_hidden_behind_a_crafted_authorization_header_still_count_and_a_combined_log_is_named(
        tmp_path, source_db, local_repo, slack):
    """nginx logs Basic base64("[x:y")'s user as `[x`: 30 good requests and 300 such 500s are a critical
    error rate, every line read. A log in nginx's default `combined` format (no $request_time) is a
    high finding naming the format, never "too few to judge" forever."""
    import base64

    service = FailingService()
    timed, combined = tmp_path / "timed.log", tmp_path / "combined.log"
    try:
        balancers = [NginxBalancer(tmp_path / "timed", {"app": {"web-1": f"127.0.0.1:{service.port}"}},
                                   access_log=str(timed)),
                     NginxBalancer(tmp_path / "combined", {"app": {"web-1": f"127.0.0.1:{service.port}"}},
                                   access_log=str(combined), access_log_format="combined")]
    except RuntimeError as missing:
        require(False, str(missing))
    for balancer in balancers:
        balancer.prefix.mkdir(exist_ok=True)
        balancer.start()
    try:
        env = save_env(source_db, BackupRepository(url=str(local_repo)), slack_url=slack.webhook())
        watchers = [Watch(env, load_environment(env), CheckThresholds(
            disk_paths=[], access_log=str(log), watch_rounds_to_alert=1, cpu_high_pct=101, cpu_medium_pct=101,
            memory_high_pct=101)) for log in (timed, combined)]
        for watcher in watchers:
            watcher.round()                           # starts at the log's end
        crafted = {"Authorization": "Basic " + base64.b64encode(b"[x:y").decode()}
        _send(balancers[0].ports["app"], 30, 0)
        _send(balancers[0].ports["app"], 300, 300, crafted)
        _send(balancers[1].ports["app"], 40, 0)
        hidden, other_format = (w.round() for w in watchers)
        assert "[x " in timed.read_text().splitlines()[-1], "nginx did not log the crafted user"
        assert [(t.kind, t.severity) for t in hidden if t.target == "error rate and response time"] == [
            ("down", "critical")], hidden
        assert "90.9% 5xx" in hidden[0].detail and watchers[0].access_log.unparsed == 0
        named = [t for t in other_format if t.target == "error rate and response time"]
        assert [(t.kind, t.severity) for t in named] == [("down", "high")], other_format
        assert "40 of 40 lines" in named[0].detail and "log_format ubertruck_timed" in named[0].detail
    finally:
        for balancer in balancers:
            balancer.stop()
        service.stop()
