"""What a SIGHUP's fresh read of the settings changes: at once, or only after a restart.

The daemon reads its settings again on SIGHUP, from the same sources as at
start. :func:`settings_change` compares them with the settings in force: a
setting in :data:`LIVE` takes effect at once; any other that changed (the
state dir, the control socket, the metrics address, the desired dir, the
cluster settings, and any setting added later until it is made live) keeps
its value until the daemon restarts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LIVE", "SettingsChange", "restart_message", "settings_change", "shown_change"]

#: Settings the running daemon can take over at once: its workers' timing, the
#: requests' timeouts and retries, the concurrency gate's size, the log output.
LIVE = frozenset(
    {
        "resync_interval",
        "max_backoff",
        "concurrency",
        "request_timeout",
        "connect_timeout",
        "retry_attempts",
        "log_level",
        "log_format",
    }
)

#: Shown in place of the value of a setting that holds a credential.
HIDDEN = "(hidden)"


@dataclass(frozen=True)
class SettingsChange:
    """The settings that differ, by name, in the order of the settings."""

    #: Changed, and in force at once.
    live: tuple[str, ...] = ()
    #: Changed, but the running daemon keeps the old value until it restarts.
    restart: tuple[str, ...] = ()

    def in_force(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
        """The settings in force after the change: ``new``'s live ones, ``old``'s others."""
        return {**old, **{name: new[name] for name in self.live}}


def settings_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> SettingsChange:
    """Which settings of ``new`` differ from those in force (``old``), and which apply live."""
    names = [*old, *(name for name in new if name not in old)]
    changed = [name for name in names if old.get(name) != new.get(name)]
    return SettingsChange(
        live=tuple(name for name in changed if name in LIVE),
        restart=tuple(name for name in changed if name not in LIVE),
    )


def shown_change(
    names: tuple[str, ...], old: Mapping[str, Any], new: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """``{name: {"from": old, "to": new}}`` for a log event; ``old`` and ``new`` are the
    settings as they may be shown (:func:`syncd.settings_view.settings_view`): a setting
    missing there holds a credential, and its values show as ``(hidden)``."""
    return {name: {"from": old.get(name, HIDDEN), "to": new.get(name, HIDDEN)} for name in names}


def restart_message(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The sentence saying that ``name`` changed but keeps its value until a restart."""
    shown = shown_change((name,), old, new)[name]
    return (
        f"setting {name} changed from {_text(shown['from'])} to {_text(shown['to'])}; "
        "it takes effect after a restart"
    )


def _text(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)
