"""Debian's Chromium, headless, driven over the DevTools protocol."""

from __future__ import annotations

import json
import time

from ubertruck_ops.tasks.scratch_postgres import free_port


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

    def start(self) -> Browser:
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
        deadline, last = time.monotonic() + 30, "no answer yet"
        while True:
            try:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                         if t["type"] == "page"]
                if pages:
                    break
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"      # not listening yet: look again
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port within 30 s "
                                   f"(exit {self.process.poll()}; last: {last})")
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

