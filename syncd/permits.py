"""The daemon's concurrency permits, handed to devices with news first.

A SIGHUP, or a revision that changes every device, queues a reconcile of
the whole fleet: at 10,000 devices, 20 ms a request and concurrency 32 that
queue takes ~15 s. Served in arrival order, an edit saved meanwhile, or the
devices of a rollout wave that just started, waited behind all of it (an
edit 13.5 s instead of 0.5 s; a canary wave as long as the read of the whole
fleet). So a device that asks ``first`` (it was kicked by news it can act on
now: its desired state changed and the rollout lets it start, its wave
began) gets the next free permit; the others get theirs in arrival order
once no first one waits. A device already queued when its news comes is
moved ahead (:meth:`Permits.promote`).

The semantics are :class:`asyncio.Semaphore`'s otherwise: ``acquire`` (also
``async with``), ``release``, ``locked``; a released permit goes straight to
the waiter it wakes, so no newcomer takes it over a waiter's head.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

__all__ = ["Permits"]


class Permits:
    """``size`` permits; waiters that ask ``first`` are served before the others."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("permits cannot be negative")
        self._free = size
        #: Waiters in arrival order; a waiter promoted is in both, served once (the
        #: first time it is reached: one served or cancelled is done, and passed over).
        self._first: collections.deque[asyncio.Future[None]] = collections.deque()
        self._rest: collections.deque[asyncio.Future[None]] = collections.deque()
        #: Waiters not yet served nor cancelled.
        self._waiting = 0
        #: The waiter of each task waiting now, so news can promote it.
        self._queued: dict[asyncio.Task[Any], asyncio.Future[None]] = {}

    def locked(self) -> bool:
        """Whether an ``acquire`` now would wait."""
        return self._free == 0 or self._waiting > 0

    async def acquire(self, *, first: bool = False) -> bool:
        """Take a permit, waiting for one if none is free (``first``: ahead of the others)."""
        if not self.locked():
            self._free -= 1
            return True
        waiter = asyncio.get_running_loop().create_future()
        (self._first if first else self._rest).append(waiter)
        self._waiting += 1
        task = asyncio.current_task()
        if task is not None:
            self._queued[task] = waiter
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():  # cancelled while it waited: no permit was handed over
                self._waiting -= 1
            else:  # handed a permit, then cancelled before it ran: pass the permit on
                self.release()
            raise
        finally:
            if task is not None and self._queued.get(task) is waiter:
                del self._queued[task]
        return True

    def queued(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` waits for a permit now."""
        return task in self._queued

    def promote(self, task: asyncio.Task[Any]) -> None:
        """``task``, if it waits for a permit, is served among the first from now on."""
        waiter = self._queued.get(task)
        if waiter is not None and not waiter.done():
            self._first.append(waiter)

    def release(self) -> None:
        """Give a permit back: to the first waiter that still waits, else to the pool."""
        for queue in (self._first, self._rest):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    self._waiting -= 1
                    return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
