"""The health check after a verified PUT: did the changed SIP accounts register again?

Before the PUT (from the gate) it reads the device's phone status once, so a
registration made with the new settings can be told from the old one by its
``registerTime``; after the PUT it polls ``/api/phone/status?account=N`` with
backoff until every changed account that is enabled with registration enabled
is healthy, or ``health.timeout`` has passed. A poll that errors is tried
again within the timeout. Without ``_fleet.yaml`` (or with
``health.registration: false``) there is no check.

A failed check restores the applied fingerprint read before the PUT and marks
the new one unhealthy: the device's new state was never healthy, so it must
not count as applied, not even when a later pass finds the device equal to it
(a reverted device would otherwise look like drift and be "corrected" back,
and a device left failed would show in sync). While so marked, a pass that
finds the device equal to that state reads its registration once: healthy at
last, the state is in force; else the device stays failed.

Before the PUT the check also keeps the PUT in the device's record as pending
(:mod:`syncd.pending_put`), so a restart that cut the check short checks the
device again with what the PUT changed (:mod:`syncd.health_checks`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from syncd import events
from syncd.client import DeviceClient, DeviceError
from syncd.device_status import AccountStatus
from syncd.diff import Plan
from syncd.logs import get_logger
from syncd.model import ACCOUNT_FIELDS, DeviceSpec
from syncd.outcome import Failure, Outcome
from syncd.pending_put import PendingPut
from syncd.policy import FleetPolicy
from syncd.state import StateError, StateStore

__all__ = ["REGISTRATION_FIELDS", "Health", "is_healthy"]

#: Fields a registration depends on: changing one needs a new registration. Every
#: managed field but how the account is shown and answers, and the password.
REGISTRATION_FIELDS = (frozenset(ACCOUNT_FIELDS) - {"displayName", "answerMode"}) | {"password"}
#: The fingerprint restored when none was recorded before the PUT (never a real one).
_NO_FINGERPRINT = "none"


@dataclass(frozen=True)
class _Before:
    register_times: Mapping[int, int | None]
    fingerprint: str | None


def is_healthy(status: AccountStatus | None, *, renewed: bool, before: int | None) -> bool:
    """One account's health: registered, and with ``renewed`` not the registration of ``before``.

    An account the device does not report, one that is disabled or has
    registration off, and one without registration (``local``) need nothing.
    """
    if status is None or status.enabled is False or status.registration_enabled is False:
        return True
    if status.registered is None:
        return True
    if not status.registered:
        return False
    return not (renewed and before is not None and status.register_time == before)


class Health:
    """Reads before a PUT and polls after it; one per daemon (or ``apply``)."""

    def __init__(
        self,
        *,
        policy: Callable[[], FleetPolicy],
        state: StateStore,
        initial: float = 0.2,
        maximum: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._policy = policy
        self._state = state
        self._initial = initial
        self._maximum = maximum
        self._clock = clock
        self._sleep = sleep
        self._before: dict[str, _Before] = {}

    @property
    def gated(self) -> bool:
        return self._policy().health.registration

    async def snapshot(
        self, spec: DeviceSpec, plan: Plan, client: DeviceClient, *, drift: bool = False
    ) -> None:
        """Right before the PUT: the accounts' registerTime and the applied fingerprint,
        and the PUT kept as pending in the device's record (it survives a SIGKILL)."""
        if not self.gated:
            return
        times: dict[int, int | None] = {}
        try:
            for status in await client.phone_status():
                times[status.account] = status.register_time if status.registered else None
        except DeviceError:
            pass  # unknown before: any registration after the PUT counts
        fingerprint = self._state.applied_fingerprint(spec.name)
        self._before[spec.name] = _Before(times, fingerprint)
        pending = PendingPut.of(
            spec.fingerprint, fingerprint, plan.changes, drift=drift, time=datetime.now(UTC)
        )
        try:
            self._state.record_pending_put(spec.name, pending.to_doc())
        except StateError as exc:
            events.state_write_failed(get_logger().bind(device=spec.name), error=str(exc))

    def forget_snapshot(self, spec: DeviceSpec) -> None:
        """The PUT :meth:`snapshot` was taken for does not go out after all."""
        if self._before.pop(spec.name, None) is None:
            return
        try:
            self._state.record_pending_put(spec.name, None)
        except StateError as exc:
            events.state_write_failed(get_logger().bind(device=spec.name), error=str(exc))

    def mark_unhealthy(self, spec: DeviceSpec, before: str | None) -> None:
        """``spec`` failed its check: ``before`` counts as applied again, ``spec`` is not in
        force even when the device is found equal to it (the pending PUT ends)."""
        try:
            restored = before or _NO_FINGERPRINT
            self._state.record_unhealthy(spec.name, spec.fingerprint, restored=restored)
        except StateError as exc:
            events.state_write_failed(get_logger().bind(device=spec.name), error=str(exc))

    async def after_put(
        self, spec: DeviceSpec, outcome: Outcome, client: DeviceClient, *, revision: str | None
    ) -> Outcome:
        """The outcome of a verified PUT, turned into a failure (kind ``health``) if unhealthy."""
        before = self._before.pop(spec.name, None)
        if not self.gated or outcome.status != "applied" or before is None:
            return outcome
        renewed: dict[int, bool] = {}
        for change in outcome.changes:
            renewed[change.account] = renewed.get(change.account, False) or (
                change.field in REGISTRATION_FIELDS
            )
        failed = await self.check(spec, client, renewed, before.register_times, revision=revision)
        if failed is None:
            return outcome
        if before.fingerprint != spec.fingerprint:
            self.mark_unhealthy(spec, before.fingerprint)
        # else a drift correction put back a desired state already proven: the state is
        # sound, the device is not (a factory reset took its password, say): it stays in
        # force, so the registration monitor may send the password again.
        return replace(outcome, status="error", failure=failed)

    async def still_unhealthy(
        self, spec: DeviceSpec, client: DeviceClient, *, revision: str | None
    ) -> Failure | None:
        """A device found equal to a desired state that failed its health check: one read
        of its registration. Healthy now: that state is in force at last (``health.passed``);
        else why not, and it stays failed (no new event: the failure was logged)."""
        log = get_logger().bind(device=spec.name)
        if self.gated:
            try:
                statuses = {s.account: s for s in await client.phone_status()}
            except DeviceError as exc:
                return Failure("health", f"its registration cannot be read: {exc}")
            for account in sorted(spec.accounts):
                if not is_healthy(statuses.get(account), renewed=False, before=None):
                    message = f"account {account} is not registered under this desired state"
                    return Failure("health", message + ", which failed its health check")
            events.health_passed(log, waited=0.0, revision=revision)
        try:
            self._state.record_in_force(spec.name, spec.fingerprint, revision)
        except StateError as exc:
            events.state_write_failed(log, error=str(exc))
        return None

    async def check(
        self,
        spec: DeviceSpec,
        client: DeviceClient,
        renewed: Mapping[int, bool],
        before: Mapping[int, int | None],
        *,
        revision: str | None,
    ) -> Failure | None:
        """Poll until each account in ``renewed`` is healthy; None, or why not (logged)."""
        log = get_logger().bind(device=spec.name)
        timeout = self._policy().health.timeout
        started = self._clock()
        pending = set(renewed)
        gated: set[int] = set()
        delay = self._initial
        while True:
            for account in sorted(pending):
                read, status = await self._read(client, account)
                if not read:
                    continue  # an error: tried again within the timeout
                if not is_healthy(status, renewed=False, before=None) or (
                    status is not None and status.registered
                ):
                    gated.add(account)  # registration applies to it: worth a health.passed
                if is_healthy(status, renewed=renewed[account], before=before.get(account)):
                    pending.discard(account)
            waited = round(self._clock() - started, 3)
            if not pending:
                if gated:
                    events.health_passed(log, waited=waited, revision=revision)
                return None
            if waited >= timeout:
                account = min(pending)
                events.health_failed(log, account=account, waited=waited, revision=revision)
                message = f"account {account} did not register within {timeout:g} s of the PUT"
                return Failure("health", message)
            await self._sleep(max(0.0, min(delay, timeout - waited)))
            delay = min(delay * 2, self._maximum)

    async def registered(
        self, spec: DeviceSpec, client: DeviceClient, *, revision: str | None
    ) -> Failure | None:
        """Every account of ``spec`` registered (after a restart cut a health check short)."""
        if not self.gated:
            return None
        accounts: Collection[int] = spec.accounts.keys()
        return await self.check(spec, client, dict.fromkeys(accounts, False), {}, revision=revision)

    @staticmethod
    async def _read(client: DeviceClient, account: int) -> tuple[bool, AccountStatus | None]:
        """Whether the read worked, and the account's status (None: not reported)."""
        try:
            statuses = await client.phone_status(account)
        except DeviceError:
            return False, None
        return True, next((s for s in statuses if s.account == account), None)
