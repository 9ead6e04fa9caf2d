"""Continuous HTTP load on the application's ports, counting answers and failures."""

from __future__ import annotations

import http.client
import json
import threading
import time


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

    def __enter__(self) -> LoadGenerator:
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

