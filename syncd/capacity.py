"""The size of the daemon's concurrency gate, changed while devices hold its permits.

A bigger size releases the new permits at once. A smaller one takes permits
back as reconciles in flight give theirs up (a task waits for them): no
reconcile is cut short, and at no moment are more devices in flight than the
larger of the two sizes; once the permits are back, at most the new size.
"""

from __future__ import annotations

import asyncio
import contextlib

from syncd.permits import Permits

__all__ = ["Capacity"]


class Capacity:
    """Resizes ``gate``, :class:`~syncd.permits.Permits` created with ``size`` permits."""

    def __init__(self, gate: Permits, size: int) -> None:
        self._gate = gate
        self.size = size
        #: Permits the gate still owes since it was made smaller.
        self._owed = 0
        self._collector: asyncio.Task[None] | None = None

    def resize(self, size: int) -> None:
        """From now on at most ``size`` holders (once the holders beyond it are done)."""
        grow, self.size = size - self.size, size
        if grow >= 0:
            forgiven = min(grow, self._owed)  # permits not yet taken back need no release
            self._owed -= forgiven
            for _ in range(grow - forgiven):
                self._gate.release()
            return
        self._owed -= grow
        if self._collector is None or self._collector.done():
            self._collector = asyncio.get_running_loop().create_task(
                self._collect(), name="concurrency-resize"
            )

    async def _collect(self) -> None:
        while self._owed > 0:
            await self._gate.acquire()
            if self._owed > 0:
                self._owed -= 1  # kept for good: the gate is that much smaller
            else:  # made bigger again meanwhile
                self._gate.release()

    async def close(self) -> None:
        """Stop taking permits back (the daemon stops)."""
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
