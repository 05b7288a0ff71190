"""The collector's pace: young collections far apart, older ones as CPython has them; pauses."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from syncd.gctune import collector_paused, pace_collector


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_young_collections_come_every_50000_allocations(thresholds: tuple[int, int, int]):
    """pace_collector raises only the young generation's threshold, to 50,000."""
    pace_collector()
    assert gc.get_threshold() == (50_000, thresholds[1], thresholds[2])


def test_collector_paused_holds_collections_off_and_restores(thresholds: tuple[int, int, int]):
    """Inside collector_paused (nested too) the collector is off; after the outer block, on."""
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_collector_paused_leaves_a_disabled_collector_disabled():
    """A collector that was off before the block stays off after it, even after an error."""
    gc.disable()
    try:
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("boom")
        assert not gc.isenabled()
    finally:
        gc.enable()
