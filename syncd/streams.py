"""Writing to a stream whose reader may go away.

The reader of ``syncd run``'s log (journald, a pipe to ``tee``) or of a
command's result (``syncd plan | head -1``) can go away while syncd still
writes. Python ignores SIGPIPE, so every later write raises BrokenPipeError;
a log line must never stop the daemon (nor stop it from stopping), and a
command should end as quietly as any Unix filter. Once the reader is gone,
the stream's file descriptor is pointed at /dev/null, as the Python
documentation advises (signal module, "Note on SIGPIPE"): later lines, and
the interpreter's last flush, then vanish without an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TextIO

import structlog

__all__ = ["LineHandler", "LineLogger", "same_destination", "silence"]


def same_destination(one: TextIO, other: TextIO) -> bool:
    """Whether two streams write to the same file, pipe or terminal (``2>&1``, journald)."""
    try:
        a, b = os.fstat(one.fileno()), os.fstat(other.fileno())
    except (AttributeError, OSError, ValueError):  # not backed by a file descriptor
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def silence(stream: TextIO) -> None:
    """Send what is still written to ``stream`` to /dev/null: its reader has gone for good."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not backed by a file descriptor
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()  # what the failed write left in the buffer goes to /dev/null too


class LineLogger(structlog.WriteLogger):
    """structlog's WriteLogger, except that a line whose reader has gone is dropped."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except BrokenPipeError:
            silence(self._file)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class LineHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler that drops a record whose reader has gone instead of printing a traceback."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            silence(self.stream)
        else:
            super().handleError(record)
