"""The reverts a halted rollout owes (``onFailure: revert``): sent, counted, then settled.

Which failed devices are due comes from the rollout (on a cluster, only this
node's: :mod:`syncd.rollout_role`); :mod:`syncd.reverting` sends each one. A
finished revert writes its history entry (a failed one too, and is tried again);
the driving node settles the device in the rollout, a follower reports it to the
driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncd.client import DeviceClient
from syncd.diff import Change
from syncd.model import DeviceSpec
from syncd.policy import CallsPolicy
from syncd.retrying import RetryPolicy
from syncd.reverting import Reverter, SlotFor
from syncd.rollout import reverts_due
from syncd.rollout_history import RolloutHistory
from syncd.rollout_in_force import RolloutInForce
from syncd.rollout_role import Role
from syncd.saved_rollout import SavedRollout
from syncd.turns import Turn

__all__ = ["RolloutReverts"]


class RolloutReverts:
    """One per conductor: the reverts of its saved rollout's failed devices."""

    def __init__(
        self,
        *,
        saved: SavedRollout,
        in_force: RolloutInForce,
        role: Role,
        records: RolloutHistory,
        specs: Callable[[], Mapping[str, DeviceSpec]],
        client_of: Callable[[DeviceSpec], DeviceClient],
        calls: Callable[[], CallsPolicy],
        retry: RetryPolicy,
        clock: Callable[[], float],
        changed: Callable[[str], None] = lambda device: None,
        turn: Turn | None = None,
        slot: SlotFor | None = None,
    ) -> None:
        self._saved = saved
        #: Hears that a revert PUT changed a device (its last change, in status).
        self._changed = changed
        self._in_force = in_force
        self._role = role
        self._records = records
        self._specs = specs
        self._clock = clock
        self._reverter = Reverter(
            client_of=client_of,
            undo_of=self._undo_of,
            calls=calls,
            revision=lambda: self._saved.revision,
            done=self._reverted,
            failed=self._revert_failed,
            retry=retry,
            clock=clock,
            turn=turn,
            slot=slot,
        )

    def retune(self, retry: RetryPolicy) -> None:
        """New settings (SIGHUP): the retries of the next reverts."""
        self._reverter.retune(retry)

    @property
    def busy(self) -> bool:
        return self._reverter.busy

    def start(self) -> None:
        """Send the reverts due now (this node's, on a cluster) that are not under way."""
        if self._saved.rollout is not None:
            self._reverter.start(self._role.reverts(self._saved.rollout))

    def cancel(self) -> None:
        self._reverter.cancel()

    async def settle(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no revert is due or under way."""
        deadline = self._clock() + timeout
        while self._clock() < deadline:
            rollout = self._saved.rollout
            if not self._reverter.busy and not (rollout and reverts_due(rollout)):
                return
            await asyncio.sleep(0.1)

    def _undo_of(self, device: str) -> tuple[DeviceSpec | None, list[dict[str, Any]]]:
        """The spec and the undo values; a follower owning the device falls back on what it
        reported itself when the driver's document holds none (its report came late)."""
        undo = self._saved.undo.get(device) or self._role.undo_here(device)
        return self._specs().get(device), undo

    def _revert_failed(self, device: str, changes: Sequence[Change], error: str) -> None:
        """A revert PUT failed: its history entry; the device stays due."""
        self._records.revert_failed(device, changes, revision=self._saved.revision, error=error)

    def _reverted(self, device: str, changes: Sequence[Change]) -> None:
        """A revert is over: count it, write its history entry, settle the device."""
        revision = self._saved.revision
        if changes:
            self._records.reverted(device, changes, revision=revision)
            self._changed(device)
        if self._role.driving:
            self._in_force.settle_revert(device)
        else:
            self._role.report_revert(device, revision)
