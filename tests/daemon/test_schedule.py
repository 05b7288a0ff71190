"""When a device is reconciled next: resync jitter and the backoff rules of SPEC section 6."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from syncd.client import AuthError, RejectedError, TransportError
from syncd.daemon import DeviceWorker
from syncd.model import DeviceSpec, Mode
from syncd.reconcile import Outcome
from syncd.settings import Settings

SPEC = DeviceSpec(name="d", file="d.yaml", url="http://192.0.2.1")


def _worker(**settings: Any) -> DeviceWorker:
    # The schedule reads only the daemon's settings: a namespace stands in for it.
    daemon = SimpleNamespace(settings=Settings(**settings))
    return DeviceWorker(daemon, SPEC)  # type: ignore[arg-type]


def _ok() -> Outcome:
    return Outcome("d", SPEC.url, Mode.ENFORCE, "in_sync")


def _failed(error: Exception) -> Outcome:
    return Outcome("d", SPEC.url, Mode.ENFORCE, "error", error=error)  # type: ignore[arg-type]


class TestSchedule:
    def test_resync_is_jittered_within_ten_percent(self) -> None:
        """A converged device comes back after the resync interval, spread by at most ±10 %."""
        worker = _worker(resync_interval=60)
        delays = [worker._next_delay(_ok()) for _ in range(500)]
        assert all(54 <= d <= 66 for d in delays if d is not None)
        assert max(d for d in delays if d) - min(d for d in delays if d) > 6  # really spread

    def test_unreachable_device_backs_off_growing_up_to_the_resync_interval(self) -> None:
        """Transport failures retry after about 1, 2, 4 … s, never later than the resync interval."""
        worker = _worker(resync_interval=10)
        delays = [worker._next_delay(_failed(TransportError("down"))) for _ in range(8)]
        centres = [1, 2, 4, 8, 10, 10, 10, 10]
        for delay, centre in zip(delays, centres, strict=True):
            assert delay is not None and 0.9 * centre <= delay <= 1.1 * centre
        assert worker._next_delay(_ok()) is not None and worker.failures == 0

    def test_refused_credentials_back_off_to_max_backoff(self) -> None:
        """Auth failures wait from the resync interval, doubling, capped at max_backoff."""
        worker = _worker(resync_interval=10, max_backoff=50)
        delays = [worker._next_delay(_failed(AuthError("no", code=9))) for _ in range(5)]
        for delay, centre in zip(delays, [10, 20, 40, 50, 50], strict=True):
            assert delay is not None and 0.9 * centre <= delay <= 1.1 * centre

    @pytest.mark.parametrize("code", [11, 12, 13])
    def test_rejection_waits_for_a_desired_change(self, code: int) -> None:
        """A PUT rejected with 11, 12 or 13 is not retried on a timer at all."""
        worker = _worker()
        assert worker._next_delay(_failed(RejectedError("bad", code=code))) is None

    def test_code_14_is_retried_like_a_transport_failure(self) -> None:
        """An unspecified processing error (14) gets the growing retry, not the wait."""
        worker = _worker(resync_interval=10)
        delay = worker._next_delay(_failed(RejectedError("busy", code=14)))
        assert delay is not None and 0.9 <= delay <= 1.1
