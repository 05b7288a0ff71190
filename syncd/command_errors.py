"""A command's one-sentence errors on stderr, in the format of its log events.

SPEC section 5: results go to stdout, log events to stderr. When the log
events are JSON (the default when stderr is not a terminal), an error is one
JSON line too (``command.failed``, or ``command.usage`` for a bad command
line), so every line of stderr parses; on a terminal (or with
``--log-format console``) it is the plain ``syncd: error: ...`` sentence.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TextIO

__all__ = ["errors_as_json", "report_error", "report_warning"]


def errors_as_json(stream: TextIO, *, fmt: str | None = None) -> bool:
    """Whether errors on ``stream`` are JSON: the log format in force, else not a terminal."""
    from syncd.logs import configured_format  # structlog only once logging is in use

    chosen = fmt or configured_format()
    if chosen in ("json", "console"):
        return chosen == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def _error_line(
    message: str, *, as_json: bool, event: str = "command.failed", level: str = "error"
) -> str:
    """The line (with its newline) that reports ``message``."""
    if not as_json:
        return f"syncd: {level}: {message}\n"
    stamp = datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")
    record = {"timestamp": stamp, "level": level, "event": event, "error": message}
    return json.dumps(record, ensure_ascii=False) + "\n"


def report_error(
    message: str,
    *,
    event: str = "command.failed",
    fmt: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Write one error sentence to stderr (or ``stream``) and flush it."""
    out = stream if stream is not None else sys.stderr
    out.write(_error_line(message, as_json=errors_as_json(out, fmt=fmt), event=event))
    out.flush()


def report_warning(message: str, *, event: str, stream: TextIO | None = None) -> None:
    """A warning sentence on stderr, as :func:`report_error` writes an error."""
    out = stream if stream is not None else sys.stderr
    out.write(_error_line(message, as_json=errors_as_json(out), event=event, level="warning"))
    out.flush()
