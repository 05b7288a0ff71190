"""Structured logging: one JSON object per line, flushed at once.

structlog renders syncd's own events; the standard library's loggers (httpx,
tenacity, asyncio) are routed through the same processors, so journald and
alert rules see one format. A library's message is no stable event name: the
etcd client's (a warning per retry while etcd is down, in free text) are
debug detail, since syncd's ``cluster.unavailable`` says what an operator needs
once per outage.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import structlog

from syncd.streams import LineHandler, LineLogger

__all__ = ["configure_logging", "configured_format", "get_logger"]

#: The format configure_logging chose last ("json" or "console"), None before.
_configured: str | None = None

#: Libraries whose records are all debug detail for syncd, whatever level they log at.
#: Libraries whose records are free-text detail (each request, each etcd retry), not events:
#: written at debug, and only with debug on.
_DEBUG_ONLY = ("etcd3aio", "httpx", "httpcore", "hpack")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _rename_level(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    level = event.get("level")
    if level == "critical":
        event["level"] = "error"
    elif level == "warn":
        event["level"] = "warning"
    return event


class _DemoteToDebug(logging.Filter):
    """Log the records of ``_DEBUG_ONLY`` libraries at debug; drop them unless debug is on."""

    def __init__(self, *, keep: bool) -> None:
        super().__init__()
        self.keep = keep

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.partition(".")[0] not in _DEBUG_ONLY:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.keep


def _order_keys(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """timestamp, level, event first: what a person scanning journald reads first."""
    head: dict[str, Any] = {k: event.pop(k) for k in ("timestamp", "level", "event") if k in event}
    return {**head, **event}


def _compact_fields(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """On a terminal, show changed fields as ``1.displayName: "" -> "Door"``."""
    fields = event.get("fields")
    if isinstance(fields, list) and all(isinstance(f, dict) for f in fields):
        event["fields"] = "; ".join(
            f"{f.get('account')}.{f.get('field')}: {json.dumps(f.get('live'))} -> "
            f"{json.dumps(f.get('desired'))}"
            for f in fields
        )
    return event


def configure_logging(
    *, level: str = "info", fmt: str | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging to write to ``stream``.

    ``fmt`` None picks console rendering on a terminal and JSON otherwise.
    """
    global _configured
    out = stream if stream is not None else sys.stdout
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    _configured = fmt
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _rename_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _order_keys,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        shared.append(_compact_fields)
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    numeric = _LEVELS[level]
    writer = LineLogger(out)  # a line to a reader gone is dropped
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One writer for every logger: each bind() (one per event here) asks for one.
        logger_factory=lambda *_: writer,
        cache_logger_on_first_use=False,
    )
    handler = LineHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        )
    )
    handler.addFilter(_DemoteToDebug(keep=numeric <= logging.DEBUG))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # httpx logs every request at INFO; that is debug detail for syncd.
    for noisy in ("httpx", "httpcore", "hpack", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def configured_format() -> str | None:
    """The log format in force ("json" or "console"), or None if logging is not configured."""
    return _configured


def get_logger(**context: Any) -> Any:
    """A logger that follows the configuration in force at each call (a SIGHUP's new
    level too), with ``context`` on every line; ``get_logger().bind(...)`` would keep
    the level of the moment it was bound."""
    return structlog.get_logger(**context)
