"""Spacing the starts of a one-shot pass (issue 15): pure arithmetic on given times."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from syncd.spacing import Spacing

held_times = st.floats(min_value=0.001, max_value=30.0)
concurrencies = st.integers(min_value=1, max_value=1024)
ready_steps = st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=60)


def test_nothing_waits_until_a_device_has_answered() -> None:
    """The first devices of a pass start at once, as without spacing."""
    spacing = Spacing(concurrency=32)
    assert [spacing.delay(0.0) for _ in range(100)] == [0.0] * 100
    assert spacing.gap == 0.0


def test_a_burst_is_spread_at_a_little_less_than_hold_time_over_concurrency() -> None:
    """32 devices ready together after one held its slot 50 ms start 1.4 ms apart (0.9 x 50 / 32)."""
    spacing = Spacing(concurrency=32)
    spacing.answered(0.05)
    starts = [0.0 + spacing.delay(0.0) for _ in range(32)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert starts[0] == 0.0
    assert all(abs(g - 0.9 * 0.05 / 32) < 1e-12 for g in gaps)


@given(held=held_times, concurrency=concurrencies, steps=ready_steps)
@example(held=0.001, concurrency=901, steps=[0.0, 0.0])  # a gap of 1e-6 s is a gap
def test_starts_are_never_early_never_closer_than_the_gap(
    held: float, concurrency: int, steps: list[float]
) -> None:
    """Whenever devices become ready, none starts before it is ready, and starts are a gap apart at least."""
    spacing = Spacing(concurrency=concurrency)
    spacing.answered(held)
    now, starts = 0.0, []
    for step in steps:
        now += step
        wait = spacing.delay(now)
        assert wait >= 0.0
        starts.append(now + wait)
    gap = spacing.gap
    assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(starts))


@given(held=held_times, concurrency=concurrencies, steps=ready_steps)
@example(held=29.0, concurrency=118, steps=[0.025, 0.025])  # a wait of 5.6e-17 s once
def test_a_device_ready_after_the_booked_starts_waits_nothing(
    held: float, concurrency: int, steps: list[float]
) -> None:
    """Spacing only smooths bursts: a device ready a gap after the last start starts at once."""
    spacing = Spacing(concurrency=concurrency)
    spacing.answered(held)
    last = 0.0
    for step in steps:
        last += step
        last += spacing.delay(last)
    assert spacing.delay(last + spacing.gap) == 0.0


@given(held=held_times, concurrency=concurrencies)
def test_the_slots_stay_the_bound(held: float, concurrency: int) -> None:
    """Spacing admits devices faster than the slots free up (gap < hold time / concurrency)."""
    spacing = Spacing(concurrency=concurrency)
    spacing.answered(held)
    assert 0.0 < spacing.gap < held / concurrency


@given(st.lists(held_times, min_size=1, max_size=50))
def test_the_hold_time_is_a_moving_average_within_what_was_seen(times: list[float]) -> None:
    """The learnt hold time stays between the shortest and longest answers, and follows the newest."""
    spacing = Spacing(concurrency=8)
    for t in times:
        spacing.answered(t)
    assert spacing.held is not None
    assert min(times) - 1e-9 <= spacing.held <= max(times) + 1e-9
    before = spacing.held
    spacing.answered(before + 1.0)
    assert spacing.held > before


def test_a_nonsense_time_is_ignored() -> None:
    """A negative hold time (a clock that went back) teaches nothing."""
    spacing = Spacing(concurrency=8)
    spacing.answered(-1.0)
    assert spacing.held is None
