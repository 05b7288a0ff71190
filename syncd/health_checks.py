"""The health checks a rollout asks for after a reconcile (the worker's ``after`` hook).

A device whose PUT went out is checked (:meth:`syncd.health.Health.after_put`),
and its history entry written with the verdict. An in-sync device is checked
again when a restart cut its PUT or check short (:meth:`~syncd.health.Health.registered`),
or when its desired state already failed the check
(:meth:`~syncd.health.Health.still_unhealthy`).

What a cut-short PUT changed survives in the device's record
(:mod:`syncd.pending_put`): the check after the restart restores the
fingerprint from before it when it fails, gives the rollout the changes to
revert, and writes the PUT's history entry. A SIGTERM that cancels a check
writes the entry at once with what is known (accepted and verified, health not
known) and leaves the check itself to the next start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import replace

from syncd import events
from syncd.client import DeviceClient
from syncd.health import Health
from syncd.history import HistoryEntry, history_changes
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.outcome import Outcome
from syncd.pending_put import PendingPut
from syncd.rollout_history import RolloutHistory
from syncd.state import StateError, StateStore

__all__ = ["HealthChecks"]

#: The history entry's error when a SIGTERM cut the health check after a PUT short.
CUT_SHORT = "its health check was cut short: syncd stopped; checked again when it starts"


class HealthChecks:
    """One per conductor: the check after each reconcile, outside the concurrency gate."""

    def __init__(
        self,
        *,
        health: Health,
        state: StateStore,
        records: RolloutHistory,
        client_of: Callable[[DeviceSpec], DeviceClient],
        revision: Callable[[], str | None],
        recheck: Iterable[str],
        changing: Callable[[str], None] = lambda device: None,
    ) -> None:
        self._health = health
        self._state = state
        self._records = records
        self._client_of = client_of
        self._revision = revision
        #: Devices whose PUT or health check a restart cut short: checked again when in sync.
        self._recheck = set(recheck)
        #: The device shows as ``changing`` while a check after a restart runs.
        self._changing = changing

    def forget(self) -> None:
        """A new rollout started: what a restart cut short is the old one's."""
        self._recheck = set()

    async def after(self, spec: DeviceSpec, outcome: Outcome) -> Outcome:
        """The worker's ``after`` hook: the health check, outside the concurrency gate."""
        revision = self._revision()
        if outcome.status == "applied":
            return await self._after_put(spec, outcome, revision)
        pending = PendingPut.from_doc(self._state.pending_put(spec.name))
        if outcome.status != "in_sync":
            if pending is not None and outcome.changes and outcome.status in ("error", "changes"):
                self._end(spec.name)  # its PUT failed (entry written) or did not go out
            return outcome
        if pending is not None and pending.fingerprint != spec.fingerprint:
            # cut short, then the desired state changed: not checked again, but in the history
            self._write(spec, pending, outcome, error="its health check was cut short")
            self._end(spec.name)
            pending = None
        if spec.name in self._recheck or pending is not None:
            self._recheck.discard(spec.name)
            return await self._again(spec, outcome, pending, revision)
        if self._state.unhealthy_fingerprint(spec.name) == spec.fingerprint:
            client = self._client_of(spec)
            failed = await self._health.still_unhealthy(spec, client, revision=revision)
            if failed is not None:
                return Outcome.of(spec, "error", failure=failed)
        return outcome

    async def _after_put(self, spec: DeviceSpec, outcome: Outcome, revision: str | None) -> Outcome:
        """The check after a verified PUT; its history entry with the verdict."""
        client = self._client_of(spec)
        try:
            checked = await self._health.after_put(spec, outcome, client, revision=revision)
        except asyncio.CancelledError:  # SIGTERM: say what is known, check at the next start
            self._cut_short(spec.name, outcome.put)
            raise
        self._records.put_checked(outcome.put, checked)
        if self._state.unhealthy_fingerprint(spec.name) != spec.fingerprint:
            self._end(spec.name)  # else the unhealthy mark ended it
        return checked

    async def _again(
        self, spec: DeviceSpec, outcome: Outcome, pending: PendingPut | None, revision: str | None
    ) -> Outcome:
        """The check a restart cut short, done again on the device found in sync."""
        self._changing(spec.name)
        client = self._client_of(spec)
        failed = await self._health.registered(spec, client, revision=revision)
        if pending is None:  # nothing kept of the PUT (or no check): only the verdict
            return outcome if failed is None else Outcome.of(spec, "error", failure=failed)
        checked = outcome
        if failed is not None:
            checked = Outcome.of(spec, "error", changes=pending.changes, failure=failed)
        if not pending.logged:
            self._write(spec, pending, checked)
        if failed is not None:
            self._health.mark_unhealthy(spec, pending.before)
        else:
            self._end(spec.name)
        return checked

    def _write(
        self, spec: DeviceSpec, pending: PendingPut, checked: Outcome, *, error: str | None = None
    ) -> None:
        """The pending PUT's history entry, with the verdict of ``checked``."""
        entry = HistoryEntry(
            time=pending.time,
            device=spec.name,
            revision=self._state.applied_revision(spec.name) or self._revision() or "",
            trigger=pending.trigger,
            result="succeeded",
            changes=history_changes(pending.changes),
            error=error,
        )
        self._records.put_checked(entry, checked)

    def _cut_short(self, device: str, entry: HistoryEntry | None) -> None:
        """A SIGTERM cancelled the check: the entry now, the pending PUT marked as written."""
        pending = PendingPut.from_doc(self._state.pending_put(device))
        if entry is not None and not (pending is not None and pending.logged):
            self._records.put_checked(replace(entry, error=CUT_SHORT), None)
        if pending is not None:
            self._keep(device, pending.written())

    def _keep(self, device: str, pending: PendingPut | None) -> None:
        try:
            self._state.record_pending_put(device, None if pending is None else pending.to_doc())
        except StateError as exc:
            events.state_write_failed(get_logger().bind(device=device), error=str(exc))

    def _end(self, device: str) -> None:
        """The device has no pending PUT any more."""
        self._keep(device, None)
