"""One device, once: GET live -> diff -> PUT (enforce) -> GET to verify.

Each request is retried within a bounded budget when its failure may pass
(see :mod:`syncd.retrying`). Rejections and auth failures are not retried
here; the caller (the daemon) decides when to try the device again. Every step
logs the SPEC's events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from syncd.client import ClientPool, DeviceClient, DeviceError
from syncd.diff import Change, DiffError, Plan, diff
from syncd.logs import get_logger
from syncd.model import DeviceSpec, Mode
from syncd.retrying import RetryPolicy, with_retries
from syncd.state import StateError, StateStore

if TYPE_CHECKING:  # prometheus-client is imported only where metrics are served
    from syncd.metrics import Metrics

__all__ = ["Outcome", "Reconciler"]

T = TypeVar("T")
Status = Literal["in_sync", "changes", "applied", "error", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found and did."""

    device: str
    url: str
    mode: Mode
    status: Status
    changes: tuple[Change, ...] = ()
    drift: bool = False
    error: DeviceError | None = None
    error_kind: str | None = None
    error_message: str | None = None
    attempts: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != "error"


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

    async def _with_retries(
        self, spec: DeviceSpec, what: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        return await with_retries(
            call, device=spec.name, request=what, policy=self._retry, metrics=self._metrics
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
            log.info("reconcile.skipped", reason="mode is suspend")
            return Outcome(spec.name, spec.url, spec.mode, "skipped")
        client = self.client(spec)
        try:
            live = await self._with_retries(spec, "GET", client.get_accounts)
        except DeviceError as exc:
            self._serials.pop(spec.name, None)  # it may come back as another device
            log.error("device.unreachable", error=str(exc), code=exc.code, kind=exc.kind)
            return self._failed(spec, exc)
        target, due = await self._passwords_due(spec, client)
        try:
            plan = diff(spec.accounts, live, passwords_due=due)
        except DiffError as exc:
            log.error("apply.failed", error=str(exc), code=None, param=None, description=None)
            return Outcome(
                spec.name, spec.url, spec.mode, "error", error_kind="device", error_message=str(exc)
            )
        if plan.empty:
            self._record_in_force(spec)
            return Outcome(spec.name, spec.url, spec.mode, "in_sync")
        drift = bool(plan.readable_changes) and (
            self._state.applied_fingerprint(spec.name) == spec.fingerprint
        )
        fields = [c.as_dict() for c in plan.changes]
        if drift:
            log.warning("drift.detected", fields=fields)
        else:
            log.info("change.pending", fields=fields)
        if spec.mode is Mode.OBSERVE:
            log.info("reconcile.skipped", reason="mode is observe", changes=len(plan.changes))
        if not apply or spec.mode is not Mode.ENFORCE:
            return Outcome(spec.name, spec.url, spec.mode, "changes", plan.changes, drift)
        return await self._apply(spec, client, plan, drift, target)

    async def _apply(
        self, spec: DeviceSpec, client: DeviceClient, plan: Plan, drift: bool, target: str
    ) -> Outcome:
        log = self.log.bind(device=spec.name)
        body = plan.put_body()
        try:
            await self._with_retries(spec, "PUT", lambda: client.put_accounts(body))
        except DeviceError as exc:
            log.error(
                "apply.failed",
                error=str(exc),
                code=exc.code,
                param=exc.param,
                description=exc.description,
                kind=exc.kind,
            )
            return self._failed(spec, exc, plan.changes, drift)
        try:
            self._state.record_passwords(spec.name, target, dict(plan.passwords))
        except StateError as exc:
            log.error("state.write_failed", error=str(exc))
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
        log.info("apply.succeeded", fields=[c.as_dict() for c in plan.changes])
        return Outcome(spec.name, spec.url, spec.mode, "applied", plan.changes, drift)

    def _unverified(
        self,
        spec: DeviceSpec,
        plan: Plan,
        drift: bool,
        message: str,
        left: tuple[Change, ...] = (),
    ) -> Outcome:
        """A PUT that was accepted but is not (or cannot be shown to be) in force."""
        self.log.error(
            "apply.failed",
            device=spec.name,
            error=message,
            fields=[c.as_dict() for c in left],
            code=None,
            param=None,
            description=None,
        )
        return Outcome(
            spec.name,
            spec.url,
            spec.mode,
            "error",
            plan.changes,
            drift,
            error_kind="verify",
            error_message=message,
        )

    def _record_in_force(self, spec: DeviceSpec) -> None:
        try:
            self._state.record_fingerprint(spec.name, spec.fingerprint)
        except StateError as exc:
            self.log.error("state.write_failed", device=spec.name, error=str(exc))

    @staticmethod
    def _failed(
        spec: DeviceSpec,
        exc: DeviceError,
        changes: tuple[Change, ...] = (),
        drift: bool = False,
    ) -> Outcome:
        return Outcome(
            spec.name,
            spec.url,
            spec.mode,
            "error",
            changes,
            drift,
            error=exc,
            error_kind=exc.kind,
            error_message=str(exc),
        )
