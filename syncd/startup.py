"""The daemon's start-up steps that can fail, each failure one sentence.

A missing or unreadable desired dir, a control socket that cannot be bound
and a bad ``metrics_address`` stop ``syncd run`` before it touches a device:
each raises :class:`StartupError` naming the dir or the setting.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from syncd.control import ControlError, ControlServer
from syncd.metrics import Metrics, StatusSource, serve_metrics
from syncd.secrets import hide_credentials

__all__ = ["StartupError", "check_desired_dir", "start_control", "start_metrics"]

#: How old the event loop's heartbeat may get before /healthz answers 503.
STALE_AFTER = 10.0


class StartupError(Exception):
    """A fatal start-up problem: one sentence naming the dir or setting."""


def check_desired_dir(desired_dir: Path) -> None:
    """The desired dir is a directory the daemon may list and read."""
    if not desired_dir.is_dir():
        raise StartupError(f"desired dir {desired_dir} does not exist or is not a directory")
    if not os.access(desired_dir, os.R_OK | os.X_OK):
        raise StartupError(f"desired dir {desired_dir} is not readable")


def start_control(control: ControlServer) -> None:
    """Start serving the control socket."""
    try:
        control.start()
    except ControlError as exc:
        raise StartupError(f"{exc} (setting socket)") from None


def start_metrics(
    metrics: Metrics, address: str | None, *, status: StatusSource
) -> WSGIServer | None:
    """Serve /metrics, /healthz and the status page on ``address`` (none without one)."""
    if not address:
        return None
    try:
        server, _ = serve_metrics(metrics, address, stale_after=STALE_AFTER, status=status)
    except (OSError, ValueError, OverflowError) as exc:  # port > 65535: OverflowError
        shown = hide_credentials(address)
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            why = "another process already listens there (another syncd?)"
        elif isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
            why = "no interface of this host has that address"
        elif isinstance(exc, socket.gaierror):
            why = "its host name does not resolve to an address"
        else:
            why = str(exc)
        raise StartupError(f"bad setting metrics_address {shown!r}: {why}") from None
    return server
