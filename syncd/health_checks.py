"""The health checks a rollout asks for after a reconcile (the worker's ``after`` hook).

A device whose PUT went out is checked (:meth:`syncd.health.Health.after_put`).
An in-sync device is checked again when a restart cut its PUT or check short
(:meth:`~syncd.health.Health.registered`), or when its desired state already
failed the check (:meth:`~syncd.health.Health.still_unhealthy`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from syncd.client import DeviceClient
from syncd.health import Health
from syncd.model import DeviceSpec
from syncd.outcome import Outcome
from syncd.rollout_history import RolloutHistory
from syncd.state import StateStore

__all__ = ["HealthChecks"]


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
    ) -> None:
        self._health = health
        self._state = state
        self._records = records
        self._client_of = client_of
        self._revision = revision
        #: Devices whose PUT or health check a restart cut short: checked again when in sync.
        self._recheck = set(recheck)

    def forget(self) -> None:
        """A new rollout started: what a restart cut short is the old one's."""
        self._recheck = set()

    async def after(self, spec: DeviceSpec, outcome: Outcome) -> Outcome:
        """The worker's ``after`` hook: the health check, outside the concurrency gate."""
        revision = self._revision()
        if outcome.status == "applied":
            client = self._client_of(spec)
            checked = await self._health.after_put(spec, outcome, client, revision=revision)
            self._records.put_checked(outcome.put, checked)
            return checked
        if outcome.status != "in_sync":
            return outcome
        failed = None
        if spec.name in self._recheck:
            self._recheck.discard(spec.name)
            client = self._client_of(spec)
            failed = await self._health.registered(spec, client, revision=revision)
        elif self._state.unhealthy_fingerprint(spec.name) == spec.fingerprint:
            client = self._client_of(spec)
            failed = await self._health.still_unhealthy(spec, client, revision=revision)
        return outcome if failed is None else Outcome.of(spec, "error", failure=failed)
