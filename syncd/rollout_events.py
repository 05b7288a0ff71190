"""The rollout state machine's events, logged as SPEC section 7 names them.

:mod:`syncd.rollout` returns each step's events as plain values
(:class:`~syncd.rollout_values.Event`); this is where they become log lines
(:mod:`syncd.events`), a wave's event naming its devices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncd import events
from syncd.rollout_values import Event, Rollout

__all__ = ["log_rollout_events"]


def log_rollout_events(log: Any, found: Iterable[Event], rollout: Rollout) -> None:
    """Log each of ``found``, events of a step that led to ``rollout``."""
    for event in found:
        fields = dict(event.fields)
        revision = str(fields.pop("revision", ""))
        if event.name == "rollout.started":
            events.rollout_started(log, revision=revision, waves=fields["waves"])
        elif event.name == "rollout.wave":
            wave = str(fields["wave"])
            names = next((ds for n, ds in rollout.waves if n == wave), ())
            events.rollout_wave(log, wave=wave, devices=list(names), revision=revision)
        elif event.name == "rollout.halted":
            events.rollout_halted(
                log, wave=str(fields["wave"]), failed=fields["failed"], revision=revision
            )
        elif event.name == "rollout.completed":
            events.rollout_completed(
                log, devices=fields["devices"], failed=fields["failed"], revision=revision
            )
