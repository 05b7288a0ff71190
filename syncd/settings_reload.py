"""SIGHUP's fresh read of the daemon's settings: what it changes, and saying so.

:func:`reread_settings` reads the settings again as they were read at start
(the same flags, environment and TOML file; flags still win) and decides with
:func:`syncd.settings_change.settings_change` which changes take effect at
once. A file that became unusable changes nothing: the daemon keeps running
on the settings it has. :func:`log_reread` writes the events, once the
daemon has taken the new settings over (a new ``log_level`` applies to them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncd import daemon_events
from syncd.settings import Settings, SettingsError
from syncd.settings_change import (
    SettingsChange,
    restart_message,
    settings_change,
    shown_change,
)
from syncd.settings_view import settings_view

__all__ = ["log_reread", "reread_settings"]


@dataclass(frozen=True)
class Reread:
    """The outcome of one fresh read of the settings."""

    #: The settings before it.
    old: Settings
    #: The settings in force after it: the new live ones, the old others.
    in_force: Settings
    #: The settings as read, or None when they could not be.
    read: Settings | None
    change: SettingsChange
    #: Why the settings could not be read (the start-up error's sentence).
    error: str | None = None


async def reread_settings(current: Settings, read: Callable[[], Settings]) -> Reread:
    """Read the settings again with ``read``; compare them with those in force (``current``)."""
    try:
        fresh = await asyncio.to_thread(read)
    except SettingsError as exc:
        return Reread(current, current, None, SettingsChange(), error=str(exc))
    except Exception as exc:  # a bug must not end the daemon, nor this SIGHUP's reload
        error = f"cannot read the settings: {type(exc).__name__}: {exc}"
        return Reread(current, current, None, SettingsChange(), error=error)
    old, new = _values(current), _values(fresh)
    change = settings_change(old, new)
    in_force = current.model_copy(update={name: new[name] for name in change.live})
    return Reread(current, in_force, fresh, change)


def log_reread(reread: Reread, *, log: Any) -> None:
    """``daemon.signal`` with the settings now in force, then a warning per change not made."""
    old = settings_view(reread.old)
    new = settings_view(reread.read) if reread.read is not None else old
    live = shown_change(reread.change.live, old, new)
    daemon_events.daemon_signal(log, signal="SIGHUP", settings=live)
    if reread.error is not None:
        daemon_events.settings_invalid(log, error=reread.error)
    for name in reread.change.restart:
        daemon_events.settings_restart_needed(
            log, setting=name, message=restart_message(name, old, new)
        )


def _values(settings: Settings) -> dict[str, Any]:
    """Each setting's value as Python holds it (a path a Path, a secret its secret type)."""
    return dict(settings)
