"""What a rollout leaves in the history and counters: PUTs after their health check, reverts.

The reconcile builds a PUT's history entry; when the rollout checks health
after the PUT, the entry waits for that check and is written here, as
``unhealthy`` when the check failed. A revert's entry is written here too,
``failed`` when its PUT failed.
Each entry of a change names the device's wave (a drift correction has none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncd.diff import Change
from syncd.history import HistoryEntry, Result, append_entry, history_changes
from syncd.outcome import Outcome

if TYPE_CHECKING:
    from syncd.metrics import Metrics
    from syncd.reconcile import HistorySink

__all__ = ["RolloutHistory"]


class RolloutHistory:
    """The history entries and counters of one conductor's rollouts."""

    def __init__(
        self,
        *,
        history: HistorySink | None,
        metrics: Metrics | None,
        wall: Callable[[], datetime],
        wave_of: Callable[[str], str | None],
        log: Any,
    ) -> None:
        self._history = history
        self._metrics = metrics
        self._wall = wall
        self._wave_of = wave_of
        self._log = log

    def unhealthy(self) -> None:
        """A device failed its health check."""
        if self._metrics is not None:
            self._metrics.applies.labels("unhealthy").inc()

    def put_checked(self, entry: HistoryEntry | None, checked: Outcome | None) -> None:
        """Write an accepted PUT's history entry, ``unhealthy`` when its health check failed
        (``checked`` None: the check has no verdict, the entry goes as it is)."""
        if entry is None:
            return
        failure = checked.failure if checked is not None else None
        if failure is not None and failure.kind == "health":
            entry = replace(entry, result="unhealthy", error=failure.message)
        # A drift correction is not part of a rollout (SPEC 9): no wave.
        wave = self._wave_of(entry.device) if entry.trigger == "change" else None
        self._append(replace(entry, wave=wave))

    def reverted(self, device: str, changes: Sequence[Change], *, revision: str | None) -> None:
        """A revert put ``changes`` back: count it, write its history entry."""
        if self._metrics is not None:
            self._metrics.applies.labels("reverted").inc()
        self._append(self._revert_entry(device, changes, revision, "reverted"))

    def revert_failed(
        self, device: str, changes: Sequence[Change], *, revision: str | None, error: str
    ) -> None:
        """A revert PUT that failed: its history entry (the revert is tried again)."""
        self._append(self._revert_entry(device, changes, revision, "failed", error=error))

    def _revert_entry(
        self,
        device: str,
        changes: Sequence[Change],
        revision: str | None,
        result: Result,
        *,
        error: str | None = None,
    ) -> HistoryEntry:
        return HistoryEntry(
            time=self._wall(),
            device=device,
            revision=revision or "",
            trigger="revert",
            result=result,
            changes=history_changes(changes, reverse=True),
            wave=self._wave_of(device),
            error=error,
        )

    def _append(self, entry: HistoryEntry) -> None:
        append_entry(self._history.append if self._history else None, entry, self._log)
