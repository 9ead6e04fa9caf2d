"""The base of the small HTTP servers below: a ThreadingHTTPServer on 127.0.0.1 and a free port."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

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

