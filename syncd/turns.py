"""One thing at a time per device: its reconcile (with the health check after it), or its revert.

A device's worker never runs two reconciles at once, but a halted rollout's
revert is sent by another task. Unordered, they raced: a reconcile read the
device in sync with the failed desired state, the revert PUT landed, and the
health re-check that followed the read saw the device registered again (with
the reverted values), took the failed state as in force, and the next resync
"corrected" the revert as drift, back to the values that had failed. Holding
the device's turn across read, PUT, health check and revert orders them.

A turn costs nothing while nobody holds it: a device's entry exists only
while its turn is held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

__all__ = ["Turn", "Turns", "no_turn"]

#: A device's turn: ``async with turn(device)``.
Turn = Callable[[str], AbstractAsyncContextManager[None]]


class Turns:
    """Per device, one holder at a time; the others wait in turn."""

    def __init__(self) -> None:
        #: Per device held now, a future done when its holder lets go.
        self._held: dict[str, asyncio.Future[None]] = {}

    def held(self, device: str) -> bool:
        return device in self._held

    @contextlib.asynccontextmanager
    async def of(self, device: str) -> AsyncIterator[None]:
        """Hold ``device``'s turn (waiting while another holds it) for the ``async with``."""
        while (busy := self._held.get(device)) is not None:
            await asyncio.shield(busy)
        done = self._held[device] = asyncio.get_running_loop().create_future()
        try:
            yield
        finally:
            del self._held[device]
            done.set_result(None)


def no_turn(device: str) -> AbstractAsyncContextManager[None]:
    """No turn to take: a part used without the others (tests, tools)."""
    return contextlib.nullcontext()
