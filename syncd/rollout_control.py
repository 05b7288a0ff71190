"""``syncd rollout pause`` and ``resume``: on the saved state when no daemon runs.

:func:`on_state_dir` is the command's part when no daemon answers (standalone
only: in a cluster the rollout is in etcd and the driver's to change, see
:func:`syncd.fleet_commands.rollout_command`).

A running daemon's conductor (:meth:`syncd.conductor.Conductor.pause`)
changes its own :class:`~syncd.saved_rollout.SavedRollout` the same way, with
the same sentences and events: :data:`PAUSE` and :data:`RESUME` say what each
action does, what it logs, and what it answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from syncd import events
from syncd.logs import get_logger
from syncd.rollout_saving import read_saved
from syncd.saved_rollout import SavedRollout
from syncd.state import StateStore

if TYPE_CHECKING:
    from syncd.settings import Settings

__all__ = ["PAUSE", "RESUME", "Control", "on_state_dir", "pause_saved", "resume_saved"]


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
    held = saved.take_held_wave() if control is RESUME else None
    state.save_rollout(saved.to_doc())
    control.event(get_logger(), revision=saved.revision)
    if held is not None:  # the wave that began while paused starts now
        events.rollout_wave(get_logger(), wave=held[0], devices=held[1], revision=saved.revision)
    return control.done


def on_state_dir(settings: Settings, action: str, socket_path: Path) -> str:
    """No daemon answers on ``socket_path``: change the saved rollout in the state dir,
    unless another syncd holds it; the sentence to print (CommandError: why not)."""
    from syncd.commands import CommandError, state_dir_missing
    from syncd.local_state import open_state
    from syncd.lock import StateDirLocked, StateLock, state_lock_error

    state_dir = settings.state_dir
    if not state_dir.is_dir():
        # A mistyped path must not answer "paused" for a daemon that goes on rolling out.
        first = f" (to pause before a daemon's first start, create it: mkdir -p {state_dir})"
        raise CommandError(state_dir_missing(state_dir, socket_path) + first)
    try:
        lock = StateLock.acquire(state_dir)
    except (StateDirLocked, OSError) as exc:
        raise CommandError(state_lock_error(state_dir, exc)) from None
    with lock:
        state = open_state(settings)
        return pause_saved(state) if action == "pause" else resume_saved(state)
