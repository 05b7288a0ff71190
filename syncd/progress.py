"""A one-line progress counter for plan and apply on a terminal; silent elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """``\\r  412/1000 devices`` on stderr, redrawn at most ten times a second.

    Only when stderr is a terminal and there are enough devices to wait for;
    pipes, CI logs and ``--json`` consumers see nothing extra.
    """

    def __init__(self, total: int, *, stream: TextIO | None = None, min_total: int = 20) -> None:
        self.total = total
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._on = total >= min_total and self._stream.isatty()
        self._drawn = 0.0

    def advance(self, *_: object) -> None:
        self.done += 1
        if not self._on:
            return
        now = time.monotonic()
        if now - self._drawn >= 0.1 or self.done == self.total:
            self._drawn = now
            self._stream.write(f"\r{self.done:>{len(str(self.total))}}/{self.total} devices")
            self._stream.flush()

    def close(self) -> None:
        if self._on:
            self._stream.write("\r\033[K")
            self._stream.flush()
