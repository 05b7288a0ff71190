"""Maintenance windows: may a rollout's PUT start now, and if not, when?

A window is open while the wall clock of its time zone reads a time inside
it, on one of its days (a window that crosses midnight belongs to the day it
starts on). That reading is what makes it right across daylight-saving
changes: a window from 02:30 on the night the clocks jump from 02:00 to 03:00
opens at 03:00, the first wall-clock time at or after 02:30, and a window
ending at 02:30 on the night 03:00 falls back to 02:00 is open through both
passes of the clock over it. Wall time enters here only as an argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from syncd.policy import Window

__all__ = ["HORIZON", "WindowState", "is_open", "window_covers", "window_state"]

#: How far ahead next_open looks; a weekly schedule that opens at all opens within it.
HORIZON = timedelta(days=8)


@dataclass(frozen=True)
class WindowState:
    """Whether a rollout's PUT may start now; if not, when it next may (None: not soon)."""

    open: bool
    next_open: datetime | None = None


def window_covers(window: Window, now: datetime) -> bool:
    """Whether the wall clock of ``window``'s zone reads a time inside it at ``now``."""
    local = now.astimezone(ZoneInfo(window.tz))
    minute = local.hour * 60 + local.minute
    day = local.weekday()
    if window.start < window.end:
        return day in window.days and window.start <= minute < window.end
    yesterday = (day - 1) % 7
    return (day in window.days and minute >= window.start) or (
        yesterday in window.days and minute < window.end
    )


def is_open(windows: Sequence[Window], now: datetime) -> bool:
    """No deny window covers ``now`` and, if there are allow windows, one does."""
    allows = [w for w in windows if w.kind == "allow"]
    if any(window_covers(w, now) for w in windows if w.kind == "deny"):
        return False
    return not allows or any(window_covers(w, now) for w in allows)


def window_state(
    windows: Sequence[Window], now: datetime, *, horizon: timedelta = HORIZON
) -> WindowState:
    """Open now, or closed with the earliest instant within ``horizon`` that is open.

    ``now`` must be timezone-aware; ``next_open`` is in UTC.
    """
    if now.tzinfo is None:
        raise ValueError("window_state needs an aware datetime")
    now = now.astimezone(UTC)
    if is_open(windows, now):
        return WindowState(True)
    # The answer changes only where some window's wall clock crosses one of its
    # edges, or jumps over one (a zone's offset change): try those, in order.
    for candidate in sorted(set(_edges(windows, now, now + horizon))):
        if is_open(windows, candidate):
            return WindowState(False, candidate)
    return WindowState(False, None)


def _edges(windows: Iterable[Window], start: datetime, end: datetime) -> Iterator[datetime]:
    """Every instant in (start, end] where a window can open or close."""
    seen: set[str] = set()
    for window in windows:
        zone = ZoneInfo(window.tz)
        first = start.astimezone(zone).date() - timedelta(days=1)
        days = (end - start).days + 3
        minutes = {0, window.start, window.end % 1440}
        for offset in range(days):
            day = first + timedelta(days=offset)
            for minute in minutes:
                for fold in (0, 1):
                    instant = _local(day, minute, zone, fold).astimezone(UTC)
                    if start < instant <= end:
                        yield instant
        if window.tz not in seen:
            seen.add(window.tz)
            yield from _offset_changes(zone, start, end)


def _local(day: date, minute: int, zone: ZoneInfo, fold: int) -> datetime:
    return datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone, fold=fold)


def _offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    """The instants in (start, end] where ``zone``'s UTC offset changes, to the second."""
    low_end, high_end = math.floor(start.timestamp()), math.ceil(end.timestamp())
    for hour in range(low_end, high_end, 3600):
        low, high = hour, min(hour + 3600, high_end)
        old = _offset(zone, low)
        if old == _offset(zone, high):
            continue
        while high - low > 1:  # offset(low) is the old one, offset(high) the new
            middle = (low + high) // 2
            if _offset(zone, middle) == old:
                low = middle
            else:
                high = middle
        instant = datetime.fromtimestamp(high, UTC)
        if start < instant <= end:
            yield instant


def _offset(zone: ZoneInfo, timestamp: int) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, zone).utcoffset()
