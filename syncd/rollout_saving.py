"""Writing the saved rollout: at once for what must survive a SIGKILL, soon for the rest.

The document holds every device of the rollout, so writing it after each
device's outcome made a pass over N devices write N x N entries (6.4 of 9 s of
``syncd apply`` over 1,000 in-sync devices). A failure and every rollout event
are written at once, as the whole document. A device starting its PUT and its
health verdict are written at once too, but as one journal line of that
device's status (:meth:`RolloutSaver.note`); the document follows within
:data:`SAVE_EVERY`. An in-sync or unreachable device may wait that long: a
SIGKILL loses at most that much of them, and those devices are simply looked at
again (one GET) after the restart. A document that takes long to write (tens of
milliseconds at 10,000 devices) waits longer between writes, so writing it never
takes more than :data:`SAVE_SHARE` of the time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger as Log

from syncd import events
from syncd.rollout_values import DeviceStatus
from syncd.saved_rollout import SavedRollout, journal_entry
from syncd.state import StateError, StateStore

__all__ = ["SAVE_EVERY", "SAVE_SHARE", "RolloutSaver", "read_saved"]

#: Seconds an outcome that can be learnt again may wait to be written (at least).
SAVE_EVERY = 1.0
#: The most of the time writing the document may take: after a write it waits 1 / SAVE_SHARE
#: times as long as that write took (when that is longer than SAVE_EVERY). A SIGKILL
#: loses at most that wait's outcomes that can be learnt again.
SAVE_SHARE = 0.02


def read_saved(state: StateStore, log: Log) -> SavedRollout:
    """The saved rollout; one that cannot be read is told (``state.rollout_damaged``) and
    read as none, as the state machine must go on."""
    try:
        saved = SavedRollout.of(state.load_rollout())
    except StateError as exc:
        saved = SavedRollout(damaged=str(exc))
    if saved.damaged is not None:
        events.state_rollout_damaged(log, error=saved.damaged)
    return saved


class RolloutSaver:
    """Writes ``saved`` to the state store: :meth:`now`, or :meth:`soon` and :meth:`due`."""

    def __init__(
        self, state: StateStore, saved: SavedRollout, *, clock: Callable[[], float], log: Log
    ) -> None:
        self._state = state
        self._saved = saved
        self._clock = clock
        self._log = log
        self._saved_at = float("-inf")
        self._unsaved = False
        self._every = SAVE_EVERY

    def now(self) -> None:
        self._saved_at, self._unsaved = self._clock(), False
        started = time.perf_counter()
        try:
            self._state.save_rollout(self._saved.to_doc())
        except StateError as exc:
            events.state_write_failed(self._log, error=str(exc))
        self._every = max(SAVE_EVERY, (time.perf_counter() - started) / SAVE_SHARE)

    def _due(self) -> bool:
        return self._clock() - self._saved_at >= self._every

    def note(self, device: str, status: DeviceStatus) -> None:
        """Only ``device``'s status changed: journal it at once (the document follows soon)."""
        if self._due():
            self.now()  # also the first write of a process: the journal follows a document
            return
        self._unsaved = True
        try:
            self._state.append_rollout(journal_entry(device, status))
        except StateError as exc:
            events.state_write_failed(self._log, error=str(exc))

    def soon(self) -> None:
        """Written within :data:`SAVE_EVERY` or so (by this call, or :meth:`due`/:meth:`flush`)."""
        if self._due():
            self.now()
        else:
            self._unsaved = True

    def due(self) -> None:
        """The timer's tick: write what waited long enough."""
        if self._unsaved and self._due():
            self.now()

    def flush(self) -> None:
        """Write what is waiting, whatever the time (the process is stopping)."""
        if self._unsaved:
            self.now()
