"""Debian's nginx as the tests' load balancer."""

from __future__ import annotations

import time

from ubertruck_ops.tasks.scratch_postgres import free_port


class NginxBalancer:
    """Debian's nginx as the test user (everything under `prefix`), one `listen 127.0.0.1:<free port>`
    server per upstream, proxying to that upstream; `block` is the LoadBalancer block that rewrites
    its upstreams file. Start with `start()`, stop with `stop()`."""

    def __init__(self, prefix, upstreams: dict[str, dict[str, str]], access_log: str | None = None,
                 access_log_format: str | None = None, **block_fields):
        import os
        import shutil
        from pathlib import Path

        from ubertruck_ops.blocks.load_balancer import LoadBalancer

        self.binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
        if self.binary is None:
            raise RuntimeError("nginx is not installed (the load-balancer tests run Debian's): apt-get install -y nginx")
        self.prefix = Path(prefix)
        self.access_log = access_log     # written in the ubertruck_timed log_format when given
        self.access_log_format = access_log_format     # another format by name (nginx's "combined")
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

    def start(self) -> NginxBalancer:
        # A port found free can be taken before nginx binds it (a client's outgoing connection
        # draws from the same ephemeral range; seen on CI): pick the ports here, and pick new
        # ones when nginx says one is in use.
        for attempt in range(3):
            try:
                return self._start_on({name: free_port() for name in self.block.upstreams})
            except _PortTaken:
                if attempt == 2:
                    raise

    def _start_on(self, ports: dict[str, int]) -> NginxBalancer:
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

        logging = (f"    log_format {LOG_FORMAT_NAME} '{LOG_FORMAT}';\n    access_log {self.access_log} "
                   f"{self.access_log_format or LOG_FORMAT_NAME};" if self.access_log else "    access_log off;")
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

