"""The daemon's concurrency slots: held while syncd works on a device, not while it waits.

``concurrency`` bounds the devices syncd works on at once (``Lanes.gate``).
Devices that stop answering must not take those slots from the ones that
answer (SPEC section 6: one failing device never delays the others; issue 17:
nor does a dark site), so a request waiting on the network gives its slot up:

- an attempt still unanswered after the lease (:func:`syncd.schedule.slot_lease`)
  gives its slot back, and takes one again when the answer comes, before
  syncd works on it; so a device going dark costs the others a lease, not a
  request timeout;
- a device whose last reconcile could not reach it
  (:func:`syncd.schedule.failing_lane`), and a device waiting between two
  attempts, hold no slot at all until it answers.

A request waiting without a slot costs one open socket, the one its
request was sent on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import Token
from dataclasses import dataclass

from syncd.outcome import Outcome
from syncd.permits import Permits
from syncd.retrying import PACING, Pacing
from syncd.schedule import slot_lease
from syncd.spacing import Spacing

__all__ = ["Lanes", "PassSlots", "Slot"]


@dataclass(frozen=True)
class Lanes:
    """The slots every worker of a daemon shares: ``gate`` has ``concurrency`` permits.

    ``lease``: how long an unanswered attempt keeps its slot (None: for the
    whole attempt, and a failing device is not set apart either: how a
    worker built without lanes behaves).
    """

    gate: Permits
    lease: float | None = None

    @classmethod
    def for_daemon(cls, gate: Permits, *, request_timeout: float) -> Lanes:
        return cls(gate=gate, lease=slot_lease(request_timeout))


class Slot:
    """One reconcile's hold on the gate; ``async with`` takes it and gives it back.

    Inside the ``async with``, :func:`syncd.retrying.with_retries` runs each
    attempt in :meth:`attempt` and waits between attempts in :meth:`wait`
    (the slot is this task's ``PACING``).
    """

    def __init__(self, lanes: Lanes, *, failing_lane: bool, first: bool = False) -> None:
        self.lanes = lanes
        #: Waiting for its answers without a slot (until it answers).
        self.failing_lane = failing_lane and lanes.lease is not None
        #: Served before devices without news (:mod:`syncd.permits`), at each acquire.
        self.first = first
        self._held = False
        self._overrun: asyncio.TimerHandle | None = None
        self._token: Token[Pacing | None] | None = None

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        if not self._held:
            await self.lanes.gate.acquire(first=self.first)
            self._held = True

    def release(self) -> None:
        if self._overrun is not None:
            self._overrun.cancel()
            self._overrun = None
        if self._held:
            self._held = False
            self.lanes.gate.release()

    def attempt(self) -> _Attempt:
        """One attempt of a request; once it is answered, syncd works on the answer in a slot."""
        return _Attempt(self)

    async def _begin_attempt(self) -> None:
        if self.failing_lane:
            self.release()
        else:
            await self.acquire()
            if self.lanes.lease is not None:
                loop = asyncio.get_running_loop()
                self._overrun = loop.call_later(self.lanes.lease, self.release)

    async def _end_attempt(self, answered: bool) -> None:
        if self._overrun is not None:
            self._overrun.cancel()
            self._overrun = None
        if answered:
            self.failing_lane = False
            await self.acquire()

    async def wait(self, delay: float) -> None:
        """Wait between two attempts holding no slot; the next attempt waits without one too."""
        self.release()
        await asyncio.sleep(delay)
        self.failing_lane = self.lanes.lease is not None

    async def __aenter__(self) -> Slot:
        if not self.failing_lane:
            await self.acquire()
        self._token = PACING.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._token is not None:
            PACING.reset(self._token)
            self._token = None
        self.release()


class _Attempt:
    """:meth:`Slot.attempt`: a plain context manager, not a generator (one per request)."""

    __slots__ = ("_slot",)

    def __init__(self, slot: Slot) -> None:
        self._slot = slot

    async def __aenter__(self) -> None:
        await self._slot._begin_attempt()

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        await self._slot._end_attempt(answered=kind is None)


class PassSlots:
    """A one-shot pass's ``concurrency`` slots, handed out evenly spaced (:mod:`syncd.spacing`)."""

    def __init__(self, concurrency: int) -> None:
        self._gate = asyncio.Semaphore(concurrency)
        self._spacing = Spacing(concurrency)

    async def run(self, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
        """``work`` in a slot; how long it held it, if it answered, spaces the next ones."""
        async with self._gate:
            loop = asyncio.get_running_loop()
            wait = self._spacing.delay(loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
            started = loop.time()
            outcome = await work()
            if outcome.failure is None and outcome.status != "waiting":
                self._spacing.answered(loop.time() - started)
            return outcome
