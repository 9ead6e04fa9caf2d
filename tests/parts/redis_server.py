"""A real redis-server for the tests."""

from __future__ import annotations

import time

from ubertruck_ops.tasks.scratch_postgres import free_port


class RedisServer:
    """A real redis-server on 127.0.0.1 and a free port, with a password, no persistence."""

    def __init__(self, password: str = "redis-test-secret"):
        import shutil as _shutil

        self.binary = _shutil.which("redis-server")
        self.password = password
        self.process = None

    def start(self, port: int | None = None) -> RedisServer:
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

