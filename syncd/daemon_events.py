"""The daemon's own log events (SPEC section 7): start, signals, SIGHUP's settings, stop, failure.

Like :mod:`syncd.events`, one typed function each, taking the logger to write to
and keyword-only fields; optional fields that are ``None`` are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger as Log

from syncd import __version__
from syncd.settings_view import settings_view

__all__ = [
    "daemon_failed",
    "daemon_signal",
    "daemon_starting",
    "daemon_stopped",
    "daemon_stopping",
    "settings_invalid",
    "settings_restart_needed",
    "settings_unknown_variable",
]


def daemon_starting(
    log: Log, *, desired_dir: str, state_dir: str, settings: BaseModel | None = None
) -> None:
    """The daemon starts: with ``settings``, its version and effective settings (no secret)."""
    extra: dict[str, Any] = {}
    if settings is not None:
        extra = {"version": __version__, "settings": settings_view(settings)}
    log.info("daemon.starting", desired_dir=desired_dir, state_dir=state_dir, **extra)


def daemon_signal(
    log: Log, *, signal: str, settings: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """A signal; for SIGHUP, the ``settings`` that changed and took effect at once
    (``{name: {"from": old, "to": new}}``, a credential's values hidden)."""
    extra: dict[str, Any] = {} if settings is None else {"settings": settings}
    log.info("daemon.signal", signal=signal, **extra)


def daemon_stopping(log: Log, *, in_flight: int) -> None:
    log.info("daemon.stopping", in_flight=in_flight)


def daemon_stopped(log: Log) -> None:
    log.info("daemon.stopped")


def daemon_failed(log: Log, *, error: str) -> None:
    log.error("daemon.failed", error=error)


def settings_invalid(log: Log, *, error: str) -> None:
    """SIGHUP found the settings unusable (``error`` as at start): the daemon keeps its own."""
    log.warning("settings.invalid", error=error)


def settings_restart_needed(log: Log, *, setting: str, message: str) -> None:
    """SIGHUP found ``setting`` changed, but the running daemon cannot take it over."""
    log.warning("settings.restart_needed", setting=setting, message=message)


def settings_unknown_variable(log: Log, *, variable: str, message: str) -> None:
    """At start: a ``SYNCD_*`` environment variable names no setting (a misspelling?)."""
    log.warning("settings.unknown_variable", variable=variable, message=message)
