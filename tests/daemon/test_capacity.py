"""The concurrency gate resized while devices hold its permits (SIGHUP's new concurrency)."""

from __future__ import annotations

import asyncio

from syncd.capacity import Capacity
from syncd.permits import Permits


class Holders:
    """``wanted`` tasks that each take a permit of ``gate`` and keep it until cancelled."""

    def __init__(self, gate: Permits, wanted: int) -> None:
        self.got = 0
        self._gate = gate
        self.tasks = [asyncio.create_task(self._hold()) for _ in range(wanted)]

    async def _hold(self) -> None:
        async with self._gate:
            self.got += 1
            await asyncio.Event().wait()


async def holders(gate: Permits, wanted: int) -> tuple[int, list[asyncio.Task[None]]]:
    """Start ``wanted`` holders; how many got a permit, and their tasks."""
    started = Holders(gate, wanted)
    await settle()
    return started.got, started.tasks


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class TestCapacity:
    async def test_bigger_lets_more_in_at_once(self) -> None:
        """Growing from 2 to 5 lets three more holders in at once."""
        gate = Permits(2)
        capacity = Capacity(gate, 2)
        started = Holders(gate, 6)
        await settle()
        assert started.got == 2
        capacity.resize(5)
        await settle()
        assert started.got == 5
        await stop(started.tasks)
        await capacity.close()

    async def test_smaller_takes_permits_back_as_holders_finish(self) -> None:
        """Shrinking from 4 to 1 cuts no holder short; once they are done, one at a time."""
        gate = Permits(4)
        capacity = Capacity(gate, 4)
        got, first = await holders(gate, 4)
        assert got == 4
        capacity.resize(1)
        await stop(first)  # the four finish
        await settle()
        got, second = await holders(gate, 3)
        assert got == 1
        await stop(second)
        await capacity.close()

    async def test_shrink_then_grow_before_the_permits_are_back(self) -> None:
        """4 -> 1 -> 3 while all four are held: once they finish, exactly three get in."""
        gate = Permits(4)
        capacity = Capacity(gate, 4)
        _, first = await holders(gate, 4)
        capacity.resize(1)
        await settle()
        capacity.resize(3)
        await stop(first)
        await settle()
        got, second = await holders(gate, 5)
        assert got == 3
        await stop(second)
        await capacity.close()

    async def test_grow_while_the_collector_waits(self) -> None:
        """4 -> 2 while all are held, then 2 -> 6: six get in, none is kept by the resize."""
        gate = Permits(4)
        capacity = Capacity(gate, 4)
        _, first = await holders(gate, 4)
        capacity.resize(2)
        await settle()  # the collector waits for a permit
        capacity.resize(6)
        await stop(first)
        await settle()
        got, second = await holders(gate, 8)
        assert got == 6
        await stop(second)
        await capacity.close()
