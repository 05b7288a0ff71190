"""One device's schedule in the daemon: coalescing kicks, the resync timer, backoff.

A worker sleeps until its next reconcile (:func:`syncd.schedule.next_delay`),
until it is kicked (its desired state changed, SIGHUP), or until the daemon
stops; then it reconciles, never twice at once: kicks that arrive during a run
fold into one more run. It reports each outcome through one callback and
knows nothing else of the daemon. A kick with news (a new desired state, its
wave began; not a SIGHUP's or the resync timer's) takes a slot before the
devices without news (:mod:`syncd.permits`) when ``urgent`` says the device
may act on it now (the rollout lets its change start).

A device that rejected its desired state (codes 11, 12, 13) is still read at
every resync (drift, registration); the reconciler does not send that PUT again
until the desired state changes or an operator asks (see
:meth:`syncd.reconcile.Reconciler.ask_again`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial

from syncd import events
from syncd.client import REJECT_CODES, AuthError, RejectedError
from syncd.logs import get_logger
from syncd.model import DeviceSpec
from syncd.outcome import Failure, Outcome
from syncd.permits import Permits
from syncd.schedule import OutcomeKind, failing_lane, next_delay
from syncd.slots import Lanes, Slot
from syncd.turns import Turn, no_turn

__all__ = ["DeviceWorker", "Timing", "outcome_kind"]

#: Reconciles one device once (``Reconciler.reconcile`` with ``apply=True``).
Run = Callable[[DeviceSpec], Awaitable[Outcome]]
#: Hears every outcome, in order (the daemon: metrics and the STATUS line).
Report = Callable[[Outcome], None]
#: Runs after a reconcile, outside the concurrency gate (the health check after a PUT).
After = Callable[[DeviceSpec, Outcome], Awaitable[Outcome]]


@dataclass(frozen=True)
class Timing:
    """The settings a schedule reads."""

    resync_interval: float
    max_backoff: float


def outcome_kind(outcome: Outcome) -> OutcomeKind:
    """What the schedule needs to know of an outcome."""
    if outcome.ok:
        return "ok"
    error = outcome.failure.error if outcome.failure is not None else None
    if isinstance(error, RejectedError) and error.code in REJECT_CODES:
        return "rejected"
    if isinstance(error, AuthError):
        return "auth"
    return "transient"


class DeviceWorker:
    """Schedules one device: coalescing kicks, resync timer, backoff after failures."""

    def __init__(
        self,
        spec: DeviceSpec,
        *,
        run: Run,
        report: Report,
        gate: Permits,
        stopping: asyncio.Event,
        timing: Timing,
        after: After | None = None,
        lanes: Lanes | None = None,
        urgent: Callable[[DeviceSpec], bool] | None = None,
        turn: Turn | None = None,
    ) -> None:
        self.spec = spec
        self.failures = 0
        self.running = False
        self.last: Outcome | None = None
        self.task: asyncio.Task[None] | None = None
        self._run = run
        self._report = report
        self._gate = gate
        self._stopping = stopping
        self._timing = timing
        self._after = after
        #: ``gate`` with the rules that keep dark devices off it (see syncd.slots).
        self._lanes = lanes or Lanes(gate)
        #: Kicked since its last reconcile began; ``_wake`` ends the wait for one.
        #: (Not an asyncio.Event: its deque alone was ~0.8 KB per device.)
        self._kicked = False
        self._wake: asyncio.Future[None] | None = None
        #: Kicked with news since its last reconcile began (see :meth:`kick`).
        self._news = False
        #: Whether the device may act on its news now; None: always.
        self._urgent = urgent
        #: The device's turn, held from its read to its health verdict (syncd.turns).
        self._turn = turn or no_turn

    def kick(self, *, news: bool = True) -> None:
        """Reconcile now; with ``news`` (not a SIGHUP's kick of every device) ahead of
        the devices without, if ``urgent`` lets it act on the news now."""
        self._kicked = True
        self._news = self._news or news
        if self._wake is not None:
            _wake_up(self._wake)
        gate, task = self._lanes.gate, self.task
        if news and task is not None and gate.queued(task) and self._may_act():
            gate.promote(task)  # queued behind devices without news: no longer

    def start(self) -> None:
        self.kick()
        self.task = asyncio.create_task(self._loop(), name=f"device:{self.spec.name}")

    def update(self, spec: DeviceSpec, *, news: bool = True) -> None:
        """A new desired state (``news``), or a SIGHUP: forget the backoff, reconcile now."""
        self.spec = spec
        self.failures = 0
        self.kick(news=news)

    def retune(self, *, timing: Timing, lanes: Lanes) -> None:
        """New settings (SIGHUP): the schedule after the next reconcile, the slots from then on."""
        self._timing = timing
        self._lanes = lanes

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def next_delay(self, outcome: Outcome) -> float:
        """Count the outcome into this device's failures; seconds until its next reconcile."""
        kind = outcome_kind(outcome)
        self.failures = 0 if kind == "ok" else self.failures + 1
        return next_delay(
            outcome_kind=kind,
            failures=self.failures,
            resync_interval=self._timing.resync_interval,
            max_backoff=self._timing.max_backoff,
            rand=random.uniform,
        )

    async def _until_kicked(self, delay: float | None) -> None:
        """Until :meth:`kick`, or ``delay`` seconds (None: no limit)."""
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        # The timer ends the wait as a kick does: no task cancelled and no TimeoutError
        # raised and caught at every resync of every device (asyncio.timeout would).
        timer = None if delay is None else loop.call_later(delay, _wake_up, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _loop(self) -> None:
        delay: float | None = None
        while not self._stopping.is_set():
            if not self._kicked:
                await self._until_kicked(delay)
            if self._stopping.is_set():
                return
            self._kicked = False
            first, self._news = self._news and self._may_act(), False
            last = outcome_kind(self.last) if self.last is not None else None
            async with self._turn(self.spec.name):
                async with Slot(self._lanes, failing_lane=failing_lane(last), first=first):
                    if self._stopping.is_set():
                        return
                    started = time.time()
                    outcome = await self._guarded(partial(self._run, self.spec))
                    if outcome.status == "error":
                        outcome = replace(outcome, started=started)
                if self._after is not None:
                    outcome = await self._guarded(partial(self._after, self.spec, outcome))
            self.last = outcome
            self._report(outcome)
            delay = self.next_delay(outcome)
            if outcome.retry_after is not None:  # a PUT waiting for a call to end
                delay = outcome.retry_after

    def _may_act(self) -> bool:
        return self._urgent is None or self._urgent(self.spec)

    async def _guarded(self, step: Callable[[], Awaitable[Outcome]]) -> Outcome:
        """Run one step of a reconcile (marked running); a bug in it is an ``internal`` error."""
        self.running = True
        try:
            return await step()
        except Exception as exc:  # a bug must not end this device's schedule
            message = f"internal error: {type(exc).__name__}: {exc}"
            events.apply_failed(get_logger().bind(device=self.spec.name), error=message)
            return Outcome.of(self.spec, "error", failure=Failure("internal", str(exc)))
        finally:
            self.running = False


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
