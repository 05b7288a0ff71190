"""One device, once: GET live -> diff -> PUT (enforce) -> GET to verify; and many at once.

Each request is retried within a bounded budget when its failure may pass
(see :mod:`syncd.retrying`). Rejections and auth failures are not retried
here; the caller (the daemon's worker) decides when to try the device again.
Every step logs the SPEC's events (:mod:`syncd.events`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from syncd import events
from syncd.client import ClientPool, DeviceClient, DeviceError
from syncd.diff import Change, DiffError, Plan, diff
from syncd.logs import get_logger
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Failure, Outcome
from syncd.retrying import RetryPolicy, with_retries
from syncd.state import StateError, StateStore

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from syncd.metrics import Metrics

__all__ = ["Reconciler", "reconcile_many"]

T = TypeVar("T")


class Reconciler:
    """Reconciles devices one at a time each; share one across a fleet."""

    def __init__(
        self,
        *,
        pool: ClientPool,
        state: StateStore,
        retry: RetryPolicy | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._pool = pool
        self._state = state
        self._retry = retry or RetryPolicy()
        self._clients: dict[str, tuple[DeviceSpec, DeviceClient]] = {}
        #: Serial number per device, read once while the device stays reachable.
        self._serials: dict[str, str] = {}
        #: Devices whose last read failed: one attempt per request until they answer again.
        self._unreachable: set[str] = set()
        self.log = get_logger()

    def client(self, spec: DeviceSpec) -> DeviceClient:
        """A client per device, kept while its address and credentials stay the same."""
        cached = self._clients.get(spec.name)
        if cached is not None:
            old, client = cached
            if (old.url, old.auth, old.tls) == (spec.url, spec.auth, spec.tls):
                return client
        client = DeviceClient(url=spec.url, pool=self._pool, auth=spec.auth, tls=spec.tls)
        self._clients[spec.name] = (spec, client)
        return client

    def forget(self, name: str) -> None:
        self._clients.pop(name, None)
        self._serials.pop(name, None)
        self._unreachable.discard(name)

    async def _with_retries(
        self, spec: DeviceSpec, what: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        policy = self._retry.known_unreachable(spec.name in self._unreachable)
        return await with_retries(
            call, device=spec.name, request=what, policy=policy, metrics=self._metrics
        )

    async def _password_target(self, spec: DeviceSpec, client: DeviceClient) -> str:
        """What a password record is bound to: the URL and the device's serial number.

        A device replaced at the same address (an RMA swap) has another serial,
        so it gets its passwords again. The serial is read once and again after
        the device was unreachable; if it cannot be read, the URL alone is used.
        """
        serial = self._serials.get(spec.name)
        if serial is None:
            try:
                info = await client.system_info()
            except DeviceError:
                return spec.url
            serial = str(info.get("serialNumber") or "")
            self._serials[spec.name] = serial
        return f"{spec.url}#{serial}" if serial else spec.url

    async def _passwords_due(self, spec: DeviceSpec, client: DeviceClient) -> tuple[str, set[int]]:
        managed = {n: a.password for n, a in spec.accounts.items() if a.password is not None}
        if not managed:
            return spec.url, set()
        target = await self._password_target(spec, client)
        due = {n for n, pw in managed.items() if self._state.password_due(spec.name, target, n, pw)}
        return target, due

    async def reconcile(self, spec: DeviceSpec, *, apply: bool) -> Outcome:
        """Bring one device to ``spec`` (when ``apply`` and mode is enforce), or report."""
        log = self.log.bind(device=spec.name)
        if spec.mode is Mode.SUSPEND:
            events.reconcile_skipped(log, reason="mode is suspend")
            return Outcome.of(spec, "skipped")
        client = self.client(spec)
        try:
            live = await self._with_retries(spec, "GET", client.get_accounts)
        except DeviceError as exc:
            self._serials.pop(spec.name, None)  # it may come back as another device
            self._unreachable.add(spec.name)
            events.device_unreachable(log, error=str(exc), code=exc.code, kind=exc.kind)
            return Outcome.of(spec, "error", failure=Failure.from_error(exc))
        self._unreachable.discard(spec.name)
        target, due = await self._passwords_due(spec, client)
        try:
            plan = diff(spec.accounts, live, passwords_due=due)
        except DiffError as exc:
            events.apply_failed(log, error=str(exc))
            return Outcome.of(spec, "error", failure=Failure("device", str(exc)))
        if plan.empty:
            self._record_in_force(spec)
            return Outcome.of(spec, "in_sync")
        drift = bool(plan.readable_changes) and (
            self._state.applied_fingerprint(spec.name) == spec.fingerprint
        )
        fields = [c.as_dict() for c in plan.changes]
        if drift:
            events.drift_detected(log, fields=fields)
        else:
            events.change_pending(log, fields=fields)
        if spec.mode is Mode.OBSERVE:
            events.reconcile_skipped(log, reason="mode is observe", changes=len(plan.changes))
        if not apply or spec.mode is not Mode.ENFORCE:
            return Outcome.of(spec, "changes", changes=plan.changes, drift=drift)
        return await self._apply(spec, client, plan, drift, target)

    async def _apply(
        self, spec: DeviceSpec, client: DeviceClient, plan: Plan, drift: bool, target: str
    ) -> Outcome:
        log = self.log.bind(device=spec.name)
        body = plan.put_body()
        try:
            await self._with_retries(spec, "PUT", lambda: client.put_accounts(body))
        except DeviceError as exc:
            events.apply_failed(
                log,
                error=str(exc),
                code=exc.code,
                param=exc.param,
                description=exc.description,
                kind=exc.kind,
            )
            failure = Failure.from_error(exc)
            return Outcome.of(spec, "error", changes=plan.changes, drift=drift, failure=failure)
        try:
            self._state.record_passwords(spec.name, target, plan.passwords)
        except StateError as exc:
            events.state_write_failed(log, error=str(exc))
        try:
            live = await self._with_retries(spec, "GET", client.get_accounts)
            left = diff(spec.accounts, live).readable_changes
        except (DeviceError, DiffError) as exc:
            return self._unverified(spec, plan, drift, f"could not verify: {exc}")
        if left:
            names = ", ".join(f"account {c.account} {c.field}" for c in left)
            message = f"the device accepted the PUT but did not take: {names}"
            return self._unverified(spec, plan, drift, message, left)
        self._record_in_force(spec)
        events.apply_succeeded(log, fields=[c.as_dict() for c in plan.changes])
        return Outcome.of(spec, "applied", changes=plan.changes, drift=drift)

    def _unverified(
        self,
        spec: DeviceSpec,
        plan: Plan,
        drift: bool,
        message: str,
        left: tuple[Change, ...] = (),
    ) -> Outcome:
        """A PUT that was accepted but is not (or cannot be shown to be) in force."""
        log = self.log.bind(device=spec.name)
        events.apply_failed(log, error=message, fields=[c.as_dict() for c in left])
        failure = Failure("verify", message)
        return Outcome.of(spec, "error", changes=plan.changes, drift=drift, failure=failure)

    def _record_in_force(self, spec: DeviceSpec) -> None:
        try:
            self._state.record_fingerprint(spec.name, spec.fingerprint)
        except StateError as exc:
            events.state_write_failed(self.log.bind(device=spec.name), error=str(exc))


async def reconcile_many(
    reconciler: Reconciler,
    specs: Iterable[DeviceSpec],
    *,
    apply: bool,
    concurrency: int,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Reconcile devices concurrently, at most ``concurrency`` in flight; keep order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: DeviceSpec) -> Outcome:
        async with gate:
            outcome = await reconciler.reconcile(spec, apply=apply)
        if on_done is not None:
            on_done(outcome)
        return outcome

    return list(await asyncio.gather(*(one(s) for s in specs)))
