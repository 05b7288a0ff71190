"""Concurrency slots while devices do not answer: who holds one, for how long (issue 17)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from syncd.client import TransportError
from syncd.model import Mode
from syncd.outcome import Outcome
from syncd.permits import Permits
from syncd.retrying import PACING, RetryPolicy, with_retries
from syncd.schedule import OutcomeKind, failing_lane, slot_lease
from syncd.slots import Lanes, PassSlots, Slot

QUICK = RetryPolicy(attempts=3, initial=0.2, maximum=0.2)


async def _until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let the loop run until ``predicate()`` is true."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class TestDecisions:
    @pytest.mark.parametrize(
        ("last", "waits_outside"),
        [("transient", True), ("ok", False), ("auth", False), ("rejected", False), (None, False)],
    )
    def test_only_a_device_that_could_not_be_reached_waits_outside_the_slots(
        self, last: OutcomeKind | None, waits_outside: bool
    ) -> None:
        """A device whose last reconcile could not reach it waits without a slot; one that answered (even refusing) does not."""
        assert failing_lane(last) is waits_outside

    @pytest.mark.parametrize(
        ("timeout", "lease"), [(10.0, 0.5), (3.0, 0.5), (1.0, 0.25), (0.2, 0.05)]
    )
    def test_the_lease_is_half_a_second_or_a_quarter_of_the_timeout(
        self, timeout: float, lease: float
    ) -> None:
        """An unanswered attempt keeps its slot half a second, less when the request timeout is short."""
        assert slot_lease(timeout) == pytest.approx(lease)
        assert 0 < slot_lease(timeout) < timeout

    def test_a_device_known_unreachable_gets_one_attempt(self) -> None:
        """The retry ladder is for devices that answered last time; a known-unreachable one is tried once."""
        policy = RetryPolicy(attempts=3)
        assert policy.known_unreachable(True).attempts == 1
        assert policy.known_unreachable(False) is policy
        assert policy.known_unreachable(True).initial == policy.initial


class TestSlot:
    async def test_an_unanswered_attempt_gives_its_slot_back_after_the_lease(self) -> None:
        """A hanging request frees its slot after the lease, and takes one again when the answer comes."""
        gate = Permits(1)
        answer = asyncio.Event()
        lanes = Lanes(gate, lease=0.05)

        async def hanging() -> None:
            async with Slot(lanes, failing_lane=False) as slot:
                assert slot.held
                async with slot.attempt():
                    await answer.wait()
                assert slot.held

        task = asyncio.create_task(hanging())
        await _until(lambda: gate.locked())
        await _until(lambda: not gate.locked())  # the lease ran out: another device may go
        async with gate:
            answer.set()
            await asyncio.sleep(0.05)
            assert not task.done()  # the answer waits for a slot before it is worked on
        await task
        assert not gate.locked()

    async def test_an_answer_within_the_lease_keeps_the_slot(self) -> None:
        """A device that answers promptly holds its slot throughout, as before."""
        gate = Permits(1)
        async with Slot(Lanes(gate, lease=1.0), failing_lane=False) as slot:
            async with slot.attempt():
                await asyncio.sleep(0.01)
                assert gate.locked()
            assert slot.held and gate.locked()
        assert not gate.locked()

    async def test_a_failing_device_waits_for_its_answer_without_a_slot(self) -> None:
        """A device whose last reconcile failed holds no slot while its request is out; once it answers it is worked on in one."""
        gate = Permits(1)
        async with Slot(Lanes(gate, lease=1.0), failing_lane=True) as slot:
            assert not gate.locked()
            async with slot.attempt():
                assert not gate.locked()
            assert slot.held and not slot.failing_lane
        assert not gate.locked()

    async def test_no_slot_is_held_between_retries(self) -> None:
        """While a request waits for its next attempt, and during that attempt, the device holds no slot."""
        gate = Permits(1)
        seen: list[bool] = []
        calls = 0

        async def flaky() -> str:
            nonlocal calls
            calls += 1
            seen.append(gate.locked())
            if calls < 3:
                raise TransportError("down")
            return "ok"

        async with Slot(Lanes(gate, lease=1.0), failing_lane=False) as slot:
            task = asyncio.create_task(with_retries(flaky, device="d", request="GET", policy=QUICK))
            await _until(lambda: calls == 1)
            await _until(lambda: not gate.locked())
            assert calls == 1  # still waiting for attempt 2
            assert await task == "ok"
            assert slot.held
        assert seen == [True, False, False]
        assert calls == 3

    async def test_without_lanes_a_device_keeps_its_slot_except_between_retries(self) -> None:
        """A worker built with only a gate holds it for each attempt, however long, but not while it waits to retry."""
        gate = Permits(1)
        seen: list[bool] = []

        async def failing() -> None:
            await asyncio.sleep(0.1)  # longer than any lease
            seen.append(gate.locked())
            raise TransportError("down")

        async with Slot(Lanes(gate), failing_lane=True) as slot:
            assert slot.held and not slot.failing_lane
            with pytest.raises(TransportError):
                await with_retries(failing, device="d", request="GET", policy=QUICK)
        assert seen == [True, True, True]

    async def test_the_pacing_is_the_slot_only_inside_it(self) -> None:
        """with_retries finds the slot of the reconcile running in its task, and nothing outside it."""
        assert PACING.get() is None
        async with Slot(Lanes(Permits(1)), failing_lane=False) as slot:
            assert PACING.get() is slot
        assert PACING.get() is None

    async def test_a_cancelled_reconcile_gives_its_slot_back(self) -> None:
        """Cancelling a reconcile while it waits for an answer, or for a slot, leaves every permit free."""
        gate = Permits(1)
        lanes = Lanes(gate, lease=10.0)

        async def stuck() -> None:
            async with Slot(lanes, failing_lane=False) as slot, slot.attempt():
                await asyncio.Event().wait()

        first = asyncio.create_task(stuck())
        await _until(lambda: gate.locked())
        second = asyncio.create_task(stuck())  # queued for the slot
        await asyncio.sleep(0.01)
        for task in (second, first):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert not gate.locked()
        async with asyncio.timeout(1):
            async with gate:
                pass


class TestPassSlots:
    async def test_a_pass_never_has_more_than_concurrency_devices_in_flight(self) -> None:
        """However spaced, a one-shot pass holds at most ``concurrency`` slots, and every device runs."""
        slots = PassSlots(3)
        in_flight, most, done = 0, 0, []

        async def device(n: int) -> Outcome:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            done.append(n)
            return Outcome(
                device=f"d{n}", url="http://192.0.2.1", mode=Mode.ENFORCE, status="in_sync"
            )

        outcomes = await asyncio.gather(*(slots.run(lambda n=n: device(n)) for n in range(12)))
        assert most == 3
        assert sorted(done) == list(range(12))
        assert [o.device for o in outcomes] == [f"d{n}" for n in range(12)]

    async def test_devices_after_the_first_answers_start_spaced(self) -> None:
        """Once devices have answered, the ones waiting for a slot start a gap apart, not together."""
        slots = PassSlots(4)
        starts: list[float] = []

        async def device() -> Outcome:
            starts.append(asyncio.get_running_loop().time())
            await asyncio.sleep(0.04)
            return Outcome(device="d", url="http://192.0.2.1", mode=Mode.ENFORCE, status="in_sync")

        await asyncio.gather(*(slots.run(device) for _ in range(12)))
        # The first four start together (nothing learnt yet); the next four would
        # too, when the first answer; spaced, they start ~9 ms apart (0.9 x 40 ms / 4).
        second = starts[4:8]
        assert second[-1] - second[0] >= 0.015, second
