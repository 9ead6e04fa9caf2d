"""The nginx access log `watch` reads: new complete lines since the last read, across rotation
(the old file's tail is read before the new file) and truncation."""

from __future__ import annotations

import os

from ubertruck_ops.core.watch import Request, parse_access_line


class AccessLog:
    """Follows one access log file by path."""

    def __init__(self, path: str):
        self.path = path
        self._handle = None
        self._inode: int | None = None
        self._partial = b""
        self._started = False
        self.unparsed = 0          # lines not in the ubertruck_timed format, since the start
        self.unparsed_last = 0     # of them, in the last read_new()

    def _open(self, from_end: bool) -> None:
        try:
            self._handle = open(self.path, "rb")
        except FileNotFoundError:
            self._handle, self._inode = None, None
            return
        self._inode = os.fstat(self._handle.fileno()).st_ino
        if from_end:
            self._handle.seek(0, os.SEEK_END)
        self._partial = b""

    def read_new(self) -> list[Request]:
        """Return the requests logged since the last call (the first call starts at the end of the
        file: what came before `watch` started is not news)."""
        if self._handle is None:
            first, self._started = not self._started, True
            self._open(from_end=first)
            if self._handle is None:
                return []
        chunks = [self._partial + self._handle.read()]
        self._partial = b""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is None or current.st_ino != self._inode:      # rotated: the old tail, then the new file
            self._handle.close()
            self._handle = None
            chunks[0] += b"\n"
            self._open(from_end=False)
            if self._handle is not None:
                chunks.append(self._handle.read())
        elif current.st_size < self._handle.tell():                 # truncated in place (copytruncate)
            self._handle.seek(0)
            chunks = [self._handle.read()]
        requests = []
        self.unparsed_last = 0
        for number, chunk in enumerate(chunks):
            lines = chunk.split(b"\n")
            if number == len(chunks) - 1:
                self._partial = lines.pop()                          # a line nginx is still writing
            for line in lines:
                if not line.strip():
                    continue
                request = parse_access_line(line.decode(errors="replace"))
                if request is None:
                    self.unparsed += 1
                    self.unparsed_last += 1
                else:
                    requests.append(request)
        return requests

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
