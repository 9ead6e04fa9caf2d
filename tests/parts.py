"""Small real servers and probes for the tests: a misbehaving HTTP proxy in front of S3, a
Slack webhook receiver, a watcher of every process's command line, and data checks."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import psutil
import psycopg

from ubertruck_ops.blocks.database import PostgresDatabase
from ubertruck_ops.tasks.scratch_postgres import free_port


class _Server:
    handler: type

    def start(self):
        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.httpd.owner = self
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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

    def texts(self) -> list[str]:
        return [p.get("text", "") for p in self.posts]


def processes() -> dict[int, tuple[int, str]]:
    """Return pid -> (parent pid, command line) of every process on the machine now (psutil skips
    the ones that end while it reads)."""
    return {proc.pid: (proc.info["ppid"], " ".join(proc.info["cmdline"] or []))
            for proc in psutil.process_iter(["ppid", "cmdline"])}


class CommandLineWatcher:
    """Records the command line of every process on the machine while active."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.seen: set[str] = set()
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(cmdline for _, cmdline in processes().values() if cmdline)
            time.sleep(self.interval)

    def __enter__(self) -> "CommandLineWatcher":
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def table_checksums(db: PostgresDatabase, database: str | None = None) -> dict[str, tuple[int, str]]:
    """Return {table: (row count, md5 of its rows in a stable order)} for every user table."""
    result = {}
    with psycopg.connect(**db.connect_kwargs(database)) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
            "ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            count, digest = conn.execute(
                f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM "{schema}"."{table}" t'
            ).fetchone()
            result[f"{schema}.{table}"] = (count, digest)
    return result


def list_databases(db: PostgresDatabase) -> set[str]:
    with psycopg.connect(**db.connect_kwargs("postgres")) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def flow_run_logs(state) -> str:
    """Return every log line Prefect's API holds for the flow run of `state` (and its task runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    return "\n".join(log.message for log in logs)


def flow_run_artifacts(state) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))


def flow_run_parameters(state) -> dict:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).parameters


class LoadGenerator:
    """Sends requests to every given port, continuously, from a few threads, each on a new
    connection (as nginx proxies by default); counts answers and failures."""

    def __init__(self, ports: list[int], threads: int = 3, timeout: float = 5):
        self.ports = ports
        self.threads = threads
        self.timeout = timeout
        self.ok = 0
        self.failures: list[str] = []
        self.versions: dict[int, set] = {port: set() for port in ports}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def _loop(self) -> None:
        while not self._stop.is_set():
            for port in self.ports:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
                    conn.request("GET", "/api/ping", headers={"Connection": "close"})
                    reply = conn.getresponse()
                    body = reply.read()
                    conn.close()
                    if reply.status != 200:
                        raise RuntimeError(f"HTTP {reply.status}")
                    version = json.loads(body).get("version")
                    with self._lock:
                        self.ok += 1
                        self.versions[port].add(version)
                except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                    with self._lock:
                        self.failures.append(f"port {port}: {type(exc).__name__}: {exc}")

    def __enter__(self) -> "LoadGenerator":
        for _ in range(self.threads):
            worker = threading.Thread(target=self._loop, daemon=True)
            worker.start()
            self._workers.append(worker)
        time.sleep(0.3)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)


class RedisServer:
    """A real redis-server on 127.0.0.1 and a free port, with a password, no persistence."""

    def __init__(self, password: str = "redis-test-secret"):
        import shutil as _shutil

        self.binary = _shutil.which("redis-server")
        self.password = password
        self.process = None

    def start(self, port: int | None = None) -> "RedisServer":
        """Start on `port` (a restart at the same address) or a free one."""
        import subprocess

        if self.binary is None:
            raise RuntimeError("redis-server is missing: apt-get install -y redis-server")
        self.port = port or free_port()
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", self.password, "--daemonize", "no", "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, password=self.password).ping()
                return self
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(port=self.port, password=self.password)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: a hung endpoint."""

    def start(self) -> "SilentServer":
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        self._stop = threading.Event()

        def accept():
            self.sock.settimeout(0.2)
            while not self._stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                    self.held.append(conn)
                except OSError:
                    continue
        threading.Thread(target=accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def stop(self) -> None:
        self._stop.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


class TlsServed:
    """What a test TLS server saw: its address, completed handshakes, failed ones."""

    def __init__(self):
        self.target = ""
        self.handshakes = 0
        self.failures: list[str] = []


def serve_tls_certificate(days_valid: int):
    """Context manager: a TLS server on 127.0.0.1 with a self-signed certificate valid `days_valid`
    more days; yields a TlsServed (`.target` is 'host:port')."""
    import contextlib
    import datetime as dt
    import socket
    import ssl
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    @contextlib.contextmanager
    def serving():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ubertruck.test")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=days_valid)).sign(key, hashes.SHA256()))
        with tempfile.TemporaryDirectory() as folder:
            cert_path, key_path = f"{folder}/cert.pem", f"{folder}/key.pem"
            with open(cert_path, "wb") as handle:
                handle.write(cert.public_bytes(serialization.Encoding.PEM))
            with open(key_path, "wb") as handle:
                handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_path, key_path)
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(5)
            listener.settimeout(0.2)
            stop = threading.Event()
            served = TlsServed()
            served.target = f"127.0.0.1:{listener.getsockname()[1]}"

            def serve():
                while not stop.is_set():
                    try:
                        conn, _ = listener.accept()     # times out every 0.2 s to look at `stop`
                    except TimeoutError:
                        continue
                    try:
                        tls = context.wrap_socket(conn, server_side=True)
                    except (OSError, ssl.SSLError) as exc:
                        served.failures.append(f"{type(exc).__name__}: {exc}")
                        conn.close()
                        continue
                    served.handshakes += 1
                    tls.close()         # the client only wants the certificate
            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            try:
                yield served
            finally:
                stop.set()
                thread.join(timeout=5)
                listener.close()
    return serving()


class NginxBalancer:
    """Debian's nginx as the test user (everything under `prefix`), one `listen 127.0.0.1:<free port>`
    server per upstream, proxying to that upstream; `block` is the LoadBalancer block that rewrites
    its upstreams file. Start with `start()`, stop with `stop()`."""

    def __init__(self, prefix, upstreams: dict[str, dict[str, str]], access_log: str | None = None, **block_fields):
        import os
        import shutil
        from pathlib import Path

        from ubertruck_ops.blocks.load_balancer import LoadBalancer

        self.binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
        if self.binary is None:
            raise RuntimeError("nginx is not installed (the load-balancer tests run Debian's): apt-get install -y nginx")
        self.prefix = Path(prefix)
        self.access_log = access_log     # written in the ubertruck_timed log_format when given
        self.ports: dict[str, int] = {}  # listen port per upstream, picked by start()
        self.process = None
        base = [self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                "-c", str(self.prefix / "nginx.conf")]
        fields = {"upstream_directives": ["keepalive 8"], "drain_seconds": 0.3, "drain_timeout_seconds": 10,
                  "poll_seconds": 0.1, **block_fields}
        self.block = LoadBalancer(kind="nginx", upstreams_file=str(self.prefix / "upstreams.conf"), upstreams=upstreams,
                                  reload_command=base + ["-s", "reload"], test_command=base + ["-t", "-q"],
                                  pid_file=str(self.prefix / "nginx.pid"), **fields)
        self.argv = base

    def start(self) -> "NginxBalancer":
        # A port found free can be taken before nginx binds it (a client's outgoing connection
        # draws from the same ephemeral range; seen on CI): pick the ports here, and pick new
        # ones when nginx says one is in use.
        for attempt in range(3):
            try:
                return self._start_on({name: free_port() for name in self.block.upstreams})
            except _PortTaken:
                if attempt == 2:
                    raise

    def _start_on(self, ports: dict[str, int]) -> "NginxBalancer":
        from ubertruck_ops.core.load_balancer import render_upstreams
        from ubertruck_ops.tasks import execute

        self.ports = ports
        (self.prefix / "error.log").write_text("")      # this attempt's errors only
        temp = "\n".join(f"    {kind}_temp_path {self.prefix}/{kind}_temp;" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        servers = "\n".join(
            f"    server {{\n        listen 127.0.0.1:{port};\n        location / {{ proxy_pass http://{name}; "
            f"proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n    }}" for name, port in self.ports.items())
        from ubertruck_ops.core.watch import LOG_FORMAT, LOG_FORMAT_NAME

        logging = (f"    log_format {LOG_FORMAT_NAME} '{LOG_FORMAT}';\n    access_log {self.access_log} {LOG_FORMAT_NAME};"
                   if self.access_log else "    access_log off;")
        (self.prefix / "nginx.conf").write_text(f"""daemon off;
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/error.log notice;
events {{ worker_connections 512; }}
http {{
{logging}
{temp}
    include {self.prefix}/upstreams.conf;
{servers}
}}
""")
        (self.prefix / "upstreams.conf").write_text(render_upstreams(self.block.upstreams, set(),
                                                                     self.block.upstream_directives))
        self.process = execute.spawn("nginx", self.argv)
        deadline = time.monotonic() + 10
        while not (self.prefix / "nginx.pid").exists() or not all(_accepts(p) for p in self.ports.values()):
            if self.process.poll() is not None:
                errors = (self.prefix / "error.log").read_text()
                raise (_PortTaken if "Address already in use" in errors else RuntimeError)(errors)
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start listening within 10 s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        from ubertruck_ops.tasks import execute

        if self.process is not None:
            execute.stop(self.process)


class _PortTaken(RuntimeError):
    """nginx could not bind a port found free a moment before."""


def _accepts(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


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


class Browser:
    """Debian's Chromium, headless, driven over the DevTools protocol (one page): what a person
    sees in the Prefect UI, as text and as a screenshot. Start with `start()`, stop with `stop()`."""

    def __init__(self, profile, width: int = 1400, height: int = 1000):
        import shutil

        self.binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if self.binary is None:
            raise RuntimeError("chromium is not installed (the UI test runs Debian's): apt-get install -y chromium")
        self.profile, self.size = profile, (width, height)
        self.process = self.socket = None
        self._ids = iter(range(1, 1 << 31))

    def start(self) -> "Browser":
        import httpx
        from websockets.sync.client import connect

        from ubertruck_ops.tasks import execute

        port = free_port()
        # --no-sandbox: the tests run as root in a container, where Chromium's sandbox cannot start.
        self.process = execute.spawn("chromium", [
            self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", f"--user-data-dir={self.profile}",
            f"--window-size={self.size[0]},{self.size[1]}", "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}", "about:blank"])
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                         if t["type"] == "page"]
                if pages:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port within 30 s (exit {self.process.poll()})")
            time.sleep(0.2)
        self.socket = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.call("Page.enable")
        return self

    def call(self, method: str, **params) -> dict:
        """One DevTools command; its result (events that arrive meanwhile are dropped)."""
        number = next(self._ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, until, seconds: float = 60) -> str:
        """Go to `url`; return the page's visible text once it contains `until` (a string, or a test
        of the text), or fail with what it shows."""
        self.call("Page.navigate", url=url)
        shows = until if callable(until) else (lambda text: until in text)
        deadline = time.monotonic() + seconds
        text = ""
        while time.monotonic() < deadline:
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if shows(text):
                return text
            time.sleep(0.3)
        raise AssertionError(f"{url} did not show {until!r} within {seconds:.0f} s; it shows: {text[:1500]!r}")

    def screenshot(self, path) -> bytes:
        import base64

        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        with open(path, "wb") as file:
            file.write(png)
        return png

    def stop(self) -> None:
        from ubertruck_ops.tasks import execute

        if self.socket is not None:
            self.socket.close()
        execute.stop(self.process)
