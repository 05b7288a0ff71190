"""The collector's pace: young collections far apart, the older generations as CPython has them."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from syncd.gctune import pace_collector


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_young_collections_come_every_50000_allocations(thresholds: tuple[int, int, int]):
    """pace_collector raises only the young generation's threshold, to 50,000."""
    pace_collector()
    assert gc.get_threshold() == (50_000, thresholds[1], thresholds[2])
