"""The daemon's permits: devices with news first, the others in arrival order, none lost."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.permits import Permits


async def _queue(permits: Permits, served: list[str], name: str, *, first: bool) -> None:
    await permits.acquire(first=first)
    served.append(name)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_first_waiters_are_served_before_the_others_each_in_arrival_order() -> None:
    permits = Permits(1)
    await permits.acquire()
    served: list[str] = []
    tasks = [
        asyncio.create_task(_queue(permits, served, name, first=name.startswith("f")))
        for name in ("r1", "f1", "r2", "f2")
    ]
    await _settle()
    assert permits.locked() and served == []
    for _ in tasks:
        permits.release()
        await _settle()
    assert served == ["f1", "f2", "r1", "r2"]
    await asyncio.gather(*tasks)
    permits.release()
    assert not permits.locked()


async def test_a_queued_waiter_promoted_by_news_goes_ahead() -> None:
    """A device queued without news (a SIGHUP's pass) that gets news (its file was
    saved) is served before the devices queued ahead of it."""
    permits = Permits(1)
    await permits.acquire()
    served: list[str] = []
    tasks = {n: asyncio.create_task(_queue(permits, served, n, first=False)) for n in "abc"}
    await _settle()
    assert permits.queued(tasks["c"])
    permits.promote(tasks["c"])
    permits.promote(tasks["c"])  # twice: still served once
    for _ in range(3):
        permits.release()
        await _settle()
    assert served == ["c", "a", "b"]
    assert not any(permits.queued(t) for t in tasks.values())
    permits.release()
    assert not permits.locked()


async def test_a_waiter_cancelled_takes_no_permit_and_one_handed_over_passes_it_on() -> None:
    permits = Permits(1)
    await permits.acquire()
    served: list[str] = []
    gone = asyncio.create_task(_queue(permits, served, "gone", first=True))
    late = asyncio.create_task(_queue(permits, served, "late", first=True))
    after = asyncio.create_task(_queue(permits, served, "after", first=False))
    await _settle()
    gone.cancel()  # cancelled while it waits
    await _settle()
    permits.release()  # handed to "late" ...
    late.cancel()  # ... which is cancelled before it runs: the permit goes on to "after"
    await _settle()
    assert served == ["after"]
    assert gone.cancelled() and late.cancelled() and after.done()
    permits.release()
    assert not permits.locked()


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 3),
    plan=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), max_size=12),
)
def test_no_more_holders_than_permits_and_every_permit_comes_back(
    size: int, plan: list[tuple[bool, bool, bool]]
) -> None:
    """Whatever the mix of first and plain waiters, promotions and cancellations: never
    more than ``size`` holders at once, and all ``size`` permits free at the end."""

    async def scenario() -> None:
        permits = Permits(size)
        holding = 0
        most = 0

        async def worker(first: bool) -> None:
            nonlocal holding, most
            await permits.acquire(first=first)
            holding += 1
            most = max(most, holding)
            try:
                await asyncio.sleep(0)
            finally:  # cancelled while holding: gives it back, as a Slot does
                holding -= 1
                permits.release()

        tasks = [asyncio.create_task(worker(False)) for _ in range(size)]
        for first, promote, cancel in plan:
            task = asyncio.create_task(worker(first))
            tasks.append(task)
            await asyncio.sleep(0)
            if promote:
                permits.promote(task)
            if cancel:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert most <= size
        assert holding == 0
        for _ in range(size):  # every permit is free again: size acquires without waiting
            assert not permits.locked()
            await permits.acquire()
        assert permits.locked()

    asyncio.run(scenario())
