"""A hung endpoint: accepts connections and never answers."""

from __future__ import annotations

import threading


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers: a hung endpoint."""

    def start(self) -> SilentServer:
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

