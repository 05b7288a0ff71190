"""When a device is reconciled next: resync jitter and the backoff rules of SPEC section 6."""

from __future__ import annotations

import asyncio

import pytest

from syncd.client import AuthError, DeviceError, RejectedError, TransportError
from syncd.model import DeviceSpec, Mode
from syncd.outcome import Failure, Outcome
from syncd.permits import Permits
from syncd.schedule import OutcomeKind, next_delay
from syncd.turns import Turns
from syncd.worker import DeviceWorker, Timing, outcome_kind

SPEC = DeviceSpec(name="d", file="d.yaml", url="http://192.0.2.1")


async def _never(spec: DeviceSpec) -> Outcome:
    raise AssertionError("the schedule tests never reconcile")


def _worker(resync_interval: float = 60, max_backoff: float = 3600) -> DeviceWorker:
    return DeviceWorker(
        SPEC,
        run=_never,
        report=lambda outcome: None,
        gate=Permits(1),
        stopping=asyncio.Event(),
        timing=Timing(resync_interval=resync_interval, max_backoff=max_backoff),
    )


def _ok() -> Outcome:
    return Outcome(device="d", url=SPEC.url, mode=Mode.ENFORCE, status="in_sync")


def _failed(error: DeviceError) -> Outcome:
    failure = Failure.from_error(error)
    return Outcome(device="d", url=SPEC.url, mode=Mode.ENFORCE, status="error", failure=failure)


class TestSchedule:
    def test_resync_is_jittered_within_ten_percent(self) -> None:
        """A converged device comes back after the resync interval, spread by at most ±10 %."""
        worker = _worker(resync_interval=60)
        delays = [worker.next_delay(_ok()) for _ in range(500)]
        assert all(54 <= d <= 66 for d in delays if d is not None)
        assert max(d for d in delays if d) - min(d for d in delays if d) > 6  # really spread

    def test_unreachable_device_backs_off_growing_up_to_the_resync_interval(self) -> None:
        """Transport failures retry after about 1, 2, 4 … s, never later than the resync interval."""
        worker = _worker(resync_interval=10)
        delays = [worker.next_delay(_failed(TransportError("down"))) for _ in range(8)]
        centres = [1, 2, 4, 8, 10, 10, 10, 10]
        for delay, centre in zip(delays, centres, strict=True):
            assert delay is not None and 0.9 * centre <= delay <= 1.1 * centre
        assert worker.next_delay(_ok()) is not None and worker.failures == 0

    def test_refused_credentials_back_off_to_max_backoff(self) -> None:
        """Auth failures wait from the resync interval, doubling, capped at max_backoff."""
        worker = _worker(resync_interval=10, max_backoff=50)
        delays = [worker.next_delay(_failed(AuthError("no", code=9))) for _ in range(5)]
        for delay, centre in zip(delays, [10, 20, 40, 50, 50], strict=True):
            assert delay is not None and 0.9 * centre <= delay <= 1.1 * centre

    @pytest.mark.parametrize("code", [11, 12, 13])
    def test_rejection_is_read_again_at_the_resync(self, code: int) -> None:
        """A device whose PUT was rejected with 11, 12 or 13 is read again at the resync
        interval, as one in sync is (its PUT waits for a change; its drift does not)."""
        worker = _worker(resync_interval=10)
        for _ in range(3):
            delay = worker.next_delay(_failed(RejectedError("bad", code=code)))
            assert 9.0 <= delay <= 11.0

    def test_code_14_is_retried_like_a_transport_failure(self) -> None:
        """An unspecified processing error (14) gets the growing retry, not the wait."""
        worker = _worker(resync_interval=10)
        delay = worker.next_delay(_failed(RejectedError("busy", code=14)))
        assert delay is not None and 0.9 <= delay <= 1.1


def _delay(kind: OutcomeKind, failures: int, *, rand: float = 1.0) -> float | None:
    return next_delay(
        outcome_kind=kind,
        failures=failures,
        resync_interval=10,
        max_backoff=50,
        rand=lambda low, high: rand,
    )


class TestNextDelay:
    def test_in_sync_waits_the_resync_interval_times_the_jitter(self) -> None:
        """An ok outcome waits resync_interval times the drawn factor, whatever failed before."""
        assert _delay("ok", 0, rand=0.9) == pytest.approx(9.0)
        assert _delay("ok", 7, rand=1.1) == pytest.approx(11.0)

    def test_jitter_is_drawn_between_nine_and_eleven_tenths(self) -> None:
        """The jitter factor is asked for in [0.9, 1.1]."""
        asked: list[tuple[float, float]] = []

        def rand(low: float, high: float) -> float:
            asked.append((low, high))
            return 1.0

        next_delay(outcome_kind="ok", failures=0, resync_interval=1, max_backoff=1, rand=rand)
        assert asked == [(0.9, 1.1)]

    def test_transient_failures_double_up_to_the_resync_interval(self) -> None:
        """Failures 1..6 wait 1, 2, 4, 8, then the resync interval (10) each."""
        assert [_delay("transient", n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]

    def test_auth_failures_double_from_the_resync_interval_to_max_backoff(self) -> None:
        """Refused credentials wait 10, 20, 40, then max_backoff (50)."""
        assert [_delay("auth", n) for n in range(1, 5)] == [10, 20, 40, 50]

    def test_rejection_waits_the_resync_interval(self) -> None:
        """A rejected PUT's device is read at the resync interval, however often it failed."""
        assert _delay("rejected", 1, rand=0.9) == pytest.approx(9.0)
        assert _delay("rejected", 9, rand=1.1) == pytest.approx(11.0)

    def test_huge_failure_counts_stay_finite(self) -> None:
        """A device failing for years still gets a finite delay, capped as usual."""
        assert _delay("transient", 10_000) == 10 and _delay("auth", 10_000) == 50

    def test_outcome_kinds(self) -> None:
        """The worker reads rejections (11-13), auth errors and the rest from an outcome's failure."""
        assert outcome_kind(_ok()) == "ok"
        assert outcome_kind(_failed(RejectedError("bad", code=12))) == "rejected"
        assert outcome_kind(_failed(RejectedError("busy", code=14))) == "transient"
        assert outcome_kind(_failed(AuthError("no", code=9))) == "auth"
        assert outcome_kind(_failed(TransportError("down"))) == "transient"
        internal = Outcome(
            device="d",
            url=SPEC.url,
            mode=Mode.ENFORCE,
            status="error",
            failure=Failure("internal", "boom"),
        )
        assert outcome_kind(internal) == "transient"


class TestTurn:
    async def test_the_device_turn_is_held_from_its_read_to_its_health_verdict(self) -> None:
        """Run and after (the health check) run within the device's turn, so its revert waits
        for both; the worker takes no turn while it sleeps."""
        turns = Turns()
        seen: list[tuple[str, bool]] = []
        ran = asyncio.Event()

        async def run(spec: DeviceSpec) -> Outcome:
            seen.append(("run", turns.held(spec.name)))
            return _ok()

        async def after(spec: DeviceSpec, outcome: Outcome) -> Outcome:
            await asyncio.sleep(0.05)
            seen.append(("after", turns.held(spec.name)))
            ran.set()
            return outcome

        stopping = asyncio.Event()
        worker = DeviceWorker(
            SPEC,
            run=run,
            report=lambda outcome: None,
            gate=Permits(1),
            stopping=stopping,
            timing=Timing(resync_interval=60, max_backoff=60),
            after=after,
            turn=turns.of,
        )
        worker.start()
        await asyncio.sleep(0.01)
        async with turns.of("d"):  # a revert asks for the turn while the check runs
            assert ran.is_set()
        assert seen == [("run", True), ("after", True)]
        assert not turns.held("d")
        stopping.set()
        await worker.stop()
