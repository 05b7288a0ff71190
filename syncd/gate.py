"""May this PUT start now? Asked right before every PUT (``Reconciler(gate=...)``).

A change (not a drift correction) asks the rollout whether its wave has
started and the rollout is neither halted nor paused, then the maintenance
windows. Every PUT — change, drift correction — then waits while the device
is in a call (``calls.waitForIdle``): the gate reads ``/api/call/status`` and,
while a session is listed, answers a :class:`Wait` with ``retry_after`` so the
worker looks again in a few seconds without holding a concurrency slot, for at
most ``calls.maxWait`` seconds, then lets the PUT go. A device that cannot
report calls (it refuses the request: no such function, no privilege) is idle,
logged once; one whose answer is unusable (no connection, HTTP 5xx, a body that
is not a call list), after the reconciler's retries, fails the reconcile as a
read that failed: a PUT is never based on it. ``apply.deferred`` is logged once
per wait. The reconciler may have read the calls already, alongside the
device's config (:meth:`Gate.reads_calls` says when that is worth it): that
answer is used, and when that read failed it is read again under the retry rule.

On a go, the health check takes its "before" reading (:class:`~syncd.health.Health`)
and the rollout marks the device as under way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from syncd import events
from syncd.client import CallSession, DeviceClient, DeviceError
from syncd.device_errors import cannot_report
from syncd.diff import Plan
from syncd.health import Health
from syncd.history import format_time
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.policy import FleetPolicy
from syncd.rollout_values import Decision
from syncd.windows import window_state

__all__ = ["Calls", "Gate", "PutGate", "Wait"]

#: Seconds between two reads of a busy device's call status.
CALL_RECHECK = 3.0
#: The waits logged as ``apply.deferred`` (the rollout's own events tell about the others).
_LOGGED = frozenset({"window", "call", "policy"})


@dataclass(frozen=True)
class Wait:
    """Not now: ``reason`` (``wave``, ``window``, ``call``, ``halted``, ``paused``, ``done``,
    ``policy``).

    ``retry_after`` asks the worker to look again that soon (a call); ``until``
    is when the next allowed window opens; ``detail`` says what a ``policy``
    wait waits for (the error of ``_fleet.yaml``, with its file:line).
    """

    reason: str
    retry_after: float | None = None
    until: datetime | None = None
    detail: str | None = None


#: How the gate reads a device: ``read(request, call)`` awaits ``call()`` under the
#: reconciler's retry rule (``request`` names it in the retry events).
Read = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def _once(request: str, call: Callable[[], Awaitable[Any]]) -> Any:
    return await call()


#: The device's calls read already, alongside its config (a task of the reconciler).
Calls = Awaitable[list[CallSession]]


class PutGate(Protocol):
    """The hook :class:`~syncd.reconcile.Reconciler` calls: None means go.

    A :class:`DeviceError` it raises is a read that failed: no PUT.
    """

    async def __call__(
        self,
        spec: DeviceSpec,
        plan: Plan,
        drift: bool,
        client: DeviceClient,
        *,
        read: Read = ...,
        calls: Calls | None = None,
    ) -> Wait | None: ...

    def reads_calls(self, spec: DeviceSpec) -> bool:
        """Whether a change's PUT to ``spec`` would ask for the device's calls now."""


class RolloutView(Protocol):
    """What the gate asks of the rollout (the conductor)."""

    @property
    def paused(self) -> bool: ...
    @property
    def revision(self) -> str | None: ...
    def may_start(self, spec: DeviceSpec) -> Decision: ...
    def begin(self, device: str) -> None: ...


class Gate:
    """The checks before a PUT, with the little memory they need (waits under way)."""

    def __init__(
        self,
        *,
        policy: Callable[[], FleetPolicy],
        rollout: RolloutView | None = None,
        health: Health | None = None,
        ignore_windows: bool = False,
        call_recheck: float = CALL_RECHECK,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._policy = policy
        self._rollout = rollout
        self._health = health
        self.ignore_windows = ignore_windows
        self._call_recheck = call_recheck
        self._clock = clock
        self._wall = wall
        #: Device -> the wait last logged as ``apply.deferred`` (logged once per wait).
        self._deferred: dict[str, str] = {}
        #: Device -> monotonic time its PUT started waiting for a call to end.
        self._call_since: dict[str, float] = {}
        #: Devices whose call status could not be read (logged once).
        self._no_calls: set[str] = set()

    def waiting(self, device: str) -> str | None:
        """What the device's PUT waits for now, if it waits (for status)."""
        return self._deferred.get(device)

    def reads_calls(self, spec: DeviceSpec) -> bool:
        """Whether a change's PUT to ``spec`` would ask for the device's calls now: the
        rollout and the windows let it start, and ``calls.waitForIdle`` is on."""
        policy = self._policy()
        return policy.calls.wait_for_idle and self._change_wait(spec, policy) is None

    async def __call__(
        self,
        spec: DeviceSpec,
        plan: Plan,
        drift: bool,
        client: DeviceClient,
        *,
        read: Read = _once,
        calls: Calls | None = None,
    ) -> Wait | None:
        policy = self._policy()
        wait = None if drift else self._change_wait(spec, policy)
        if wait is None and policy.calls.wait_for_idle:
            wait = await self._call_wait(spec, client, policy, read, calls)
        if wait is not None:
            self._log_deferred(spec.name, wait)
            return wait
        if self._health is not None:
            await self._health.snapshot(spec, plan, client, drift=drift)
        # Asking for calls and the registration took time: a reload meanwhile may have
        # replaced the rollout (and this plan's desired state). Decided again, last.
        wait = None if drift else self._change_wait(spec, policy)
        if wait is not None:
            if self._health is not None:
                self._health.forget_snapshot(spec)
            self._log_deferred(spec.name, wait)
            return wait
        self._deferred.pop(spec.name, None)
        self._call_since.pop(spec.name, None)
        if self._rollout is not None and not drift:
            self._rollout.begin(spec.name)
        return None

    def _change_wait(self, spec: DeviceSpec, policy: FleetPolicy) -> Wait | None:
        if self._rollout is not None:
            decision = self._rollout.may_start(spec)
            if not decision.go:
                return Wait(str(decision.reason), detail=decision.detail)
        if self.ignore_windows or not policy.windows:
            return None
        state = window_state(policy.windows, self._wall())
        return None if state.open else Wait("window", until=state.next_open)

    async def _call_wait(
        self,
        spec: DeviceSpec,
        client: DeviceClient,
        policy: FleetPolicy,
        read: Read,
        calls: Calls | None,
    ) -> Wait | None:
        try:
            busy = bool(await _read_calls(client, read, calls))
        except DeviceError as exc:
            if not cannot_report(exc):  # no usable answer: it may be in a call, so no PUT
                raise
            if spec.name not in self._no_calls:
                self._no_calls.add(spec.name)
                events.calls_unknown(get_logger().bind(device=spec.name), error=str(exc))
            return None
        self._no_calls.discard(spec.name)
        if not busy:
            return None
        now = self._clock()
        since = self._call_since.setdefault(spec.name, now)
        left = policy.calls.max_wait - (now - since)
        if left <= 0:
            return None  # waited long enough: the PUT goes ahead
        return Wait("call", retry_after=min(self._call_recheck, left))

    def _log_deferred(self, device: str, wait: Wait) -> None:
        if wait.reason not in _LOGGED:
            self._deferred[device] = wait.reason  # the rollout's own events tell why
            return
        if self._deferred.get(device) == wait.reason:
            return
        self._deferred[device] = wait.reason
        until = format_time(wait.until) if wait.until is not None else None
        revision = self._rollout.revision if self._rollout is not None else None
        log = get_logger().bind(device=device)
        events.apply_deferred(
            log, reason=wait.reason, until=until, revision=revision, error=wait.detail
        )


async def _read_calls(client: DeviceClient, read: Read, early: Calls | None) -> list[CallSession]:
    """The device's calls: the answer read alongside its config, else (none, or that read
    failed in a way that may pass) read now under the retry rule."""
    if early is not None:
        try:
            return await early
        except DeviceError as exc:
            if cannot_report(exc):
                raise
    result: list[CallSession] = await read("GET", client.call_status)
    return result
