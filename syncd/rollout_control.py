"""``syncd rollout pause`` and ``resume``: on the saved state when no daemon runs.

A running daemon's conductor (:meth:`syncd.conductor.Conductor.pause`)
changes its own :class:`~syncd.saved_rollout.SavedRollout` the same way, with
the same sentences and events: :data:`PAUSE` and :data:`RESUME` say what each
action does, what it logs, and what it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from syncd import events
from syncd.logs import get_logger
from syncd.rollout_saving import read_saved
from syncd.saved_rollout import SavedRollout
from syncd.state import StateStore

__all__ = ["PAUSE", "RESUME", "Control", "pause_saved", "resume_saved"]


@dataclass(frozen=True)
class Control:
    """One action on the saved rollout: the change, its event, the sentences to answer."""

    #: Changes the saved rollout; False when there was nothing to change.
    change: Callable[[SavedRollout], bool]
    #: Logs the event: ``event(log, revision=...)``.
    event: Callable[..., None]
    done: str
    nothing: str


PAUSE = Control(
    SavedRollout.pause,
    events.rollout_paused,
    done="rollout paused: no device starts a change until `syncd rollout resume`",
    nothing="the rollout was already paused",
)
RESUME = Control(
    SavedRollout.resume,
    events.rollout_resumed,
    done="rollout resumed",
    nothing="the rollout was neither paused nor halted, and no device failed in it",
)


def pause_saved(state: StateStore) -> str:
    """Pause on the state directly (no daemon runs); the sentence to print."""
    return _on_state(state, PAUSE)


def resume_saved(state: StateStore) -> str:
    """Resume on the state directly: unpause, and continue a halted rollout."""
    return _on_state(state, RESUME)


def _on_state(state: StateStore, control: Control) -> str:
    saved = read_saved(state, get_logger())
    if not control.change(saved):
        return control.nothing
    state.save_rollout(saved.to_doc())
    control.event(get_logger(), revision=saved.revision)
    return control.done
