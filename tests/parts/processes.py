"""Probes of the machine's processes: every command line now, or all seen while active."""

from __future__ import annotations

import threading
import time

import psutil


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

    def __enter__(self) -> CommandLineWatcher:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()

