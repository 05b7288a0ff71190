"""Maintenance windows: allow/deny by wall clock in a time zone, DST-correct, and the next opening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.policy import ALL_DAYS, Window
from syncd.windows import WindowState, is_open, window_covers, window_state

PRAGUE = "Europe/Prague"
MON, FRI, SAT, SUN = 0, 4, 5, 6


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def hm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def allow(start: str, end: str, tz: str = "UTC", days: frozenset[int] = ALL_DAYS) -> Window:
    return Window("allow", days, hm(start), hm(end), tz)


def deny(start: str, end: str, tz: str = "UTC", days: frozenset[int] = ALL_DAYS) -> Window:
    return Window("deny", days, hm(start), hm(end), tz)


class TestRules:
    def test_no_windows_is_always_open(self) -> None:
        """Without windows a rollout may run at any time."""
        assert window_state((), utc(2026, 1, 1, 3, 0)) == WindowState(True, None)

    def test_allow_window_opens_at_from_and_closes_at_to(self) -> None:
        """An allow window is open from `from` (inclusive) to `to` (exclusive)."""
        windows = (allow("09:00", "17:00"),)
        assert window_state(windows, utc(2026, 5, 4, 8, 59, 30)) == WindowState(
            False, utc(2026, 5, 4, 9, 0)
        )
        assert window_state(windows, utc(2026, 5, 4, 9, 0)).open
        assert window_state(windows, utc(2026, 5, 4, 16, 59, 59)).open
        assert window_state(windows, utc(2026, 5, 4, 17, 0)) == WindowState(
            False, utc(2026, 5, 5, 9, 0)
        )

    def test_crossing_midnight_counts_on_the_day_it_starts(self) -> None:
        """A Friday 22:00-05:00 window runs into Saturday morning, and not into Friday morning."""
        windows = (allow("22:00", "05:00", days=frozenset({FRI})),)
        friday = utc(2026, 3, 27)
        assert friday.weekday() == FRI
        assert window_state(windows, friday + timedelta(hours=23)).open
        assert window_state(windows, friday + timedelta(hours=28, minutes=59)).open
        assert not window_state(windows, friday + timedelta(hours=29)).open
        assert window_state(windows, friday + timedelta(hours=3)) == WindowState(
            False, friday + timedelta(hours=22)
        )

    def test_to_24_00_is_the_end_of_the_day(self) -> None:
        """deny Saturday 00:00-24:00 covers all of Saturday and none of Sunday."""
        windows = (deny("00:00", "24:00", days=frozenset({SAT})),)
        saturday = utc(2026, 3, 28)
        assert saturday.weekday() == SAT
        assert window_state(windows, saturday + timedelta(minutes=1439)) == WindowState(
            False, saturday + timedelta(days=1)
        )
        assert window_state(windows, saturday + timedelta(days=1)).open
        assert window_state(windows, saturday - timedelta(seconds=1)).open

    def test_deny_wins_over_allow(self) -> None:
        """While a deny window is open nothing may start, even inside an allow window."""
        windows = (allow("00:00", "24:00"), deny("12:00", "13:00"))
        assert window_state(windows, utc(2026, 6, 1, 12, 30)) == WindowState(
            False, utc(2026, 6, 1, 13, 0)
        )
        assert window_state(windows, utc(2026, 6, 1, 11, 0)).open

    def test_only_deny_windows_leave_the_rest_open(self) -> None:
        """With deny windows only, any time outside them is open."""
        windows = (deny("08:00", "18:00", days=frozenset({MON})),)
        monday = utc(2026, 6, 1)
        assert monday.weekday() == MON
        assert window_state(windows, monday + timedelta(hours=7)).open
        assert window_state(windows, monday + timedelta(hours=9)).next_open == monday + timedelta(
            hours=18
        )

    def test_any_of_several_allow_windows_opens(self) -> None:
        """With several allow windows, being in any one of them is enough."""
        windows = (allow("01:00", "02:00"), allow("03:00", "04:00"))
        assert window_state(windows, utc(2026, 6, 1, 3, 30)).open
        assert window_state(windows, utc(2026, 6, 1, 2, 30)).next_open == utc(2026, 6, 1, 3, 0)

    def test_time_zone_is_the_windows_wall_clock(self) -> None:
        """22:00 in Prague in winter (UTC+1) is 21:00 UTC."""
        windows = (allow("22:00", "05:00", PRAGUE),)
        assert window_state(windows, utc(2026, 1, 14, 12, 0)).next_open == utc(2026, 1, 14, 21, 0)

    def test_never_opening_is_none(self) -> None:
        """An allow window wholly inside a deny window never opens: next_open is None."""
        windows = (allow("10:00", "11:00", days=frozenset({MON})), deny("00:00", "24:00"))
        assert window_state(windows, utc(2026, 6, 1)) == WindowState(False, None)

    def test_next_open_is_utc_and_naive_now_is_refused(self) -> None:
        """next_open is an aware UTC datetime; a naive `now` is a programming error."""
        state = window_state((allow("10:00", "11:00", PRAGUE),), utc(2026, 6, 1, 12, 0))
        assert state.next_open is not None and state.next_open.tzinfo is UTC
        with pytest.raises(ValueError, match="aware"):
            window_state((), datetime(2026, 6, 1))

    def test_now_in_another_zone_means_the_same_instant(self) -> None:
        """`now` given in any zone is the same instant: the answer does not change."""
        now = utc(2026, 6, 1, 8, 0)
        windows = (allow("09:00", "10:00"),)
        assert window_state(windows, now.astimezone(datetime.now(UTC).astimezone().tzinfo)) == (
            window_state(windows, now)
        )


class TestDaylightSaving:
    """Prague: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25 03:00 CEST -> 02:00 CET."""

    def test_night_window_across_spring_change_keeps_wall_times(self) -> None:
        """22:00-05:00 across the spring change opens at 22:00 CET and closes at 05:00 CEST."""
        windows = (allow("22:00", "05:00", PRAGUE),)
        assert window_state(windows, utc(2026, 3, 28, 12, 0)).next_open == utc(2026, 3, 28, 21, 0)
        assert window_state(windows, utc(2026, 3, 29, 2, 59)).open
        assert window_state(windows, utc(2026, 3, 29, 3, 0)) == WindowState(
            False, utc(2026, 3, 29, 20, 0)
        )

    def test_window_starting_in_the_skipped_hour_opens_when_the_clock_jumps(self) -> None:
        """From 02:30 on the spring-change night (02:30 never happens) opens at 03:00 CEST."""
        windows = (allow("02:30", "04:00", PRAGUE, frozenset({SUN})),)
        assert window_state(windows, utc(2026, 3, 28, 23, 0)).next_open == utc(2026, 3, 29, 1, 0)
        assert window_state(windows, utc(2026, 3, 29, 1, 59)).open
        assert not window_state(windows, utc(2026, 3, 29, 2, 0)).open

    def test_window_inside_the_skipped_hour_does_not_open_that_night(self) -> None:
        """02:15-02:45 Sunday does not exist on the spring-change night; it opens a week later."""
        windows = (allow("02:15", "02:45", PRAGUE, frozenset({SUN})),)
        assert window_state(windows, utc(2026, 3, 28, 23, 0)).next_open == utc(2026, 4, 5, 0, 15)

    def test_night_window_across_autumn_change_keeps_wall_times(self) -> None:
        """22:00-05:00 across the autumn change opens at 22:00 CEST and closes at 05:00 CET."""
        windows = (allow("22:00", "05:00", PRAGUE, frozenset({SAT})),)
        assert window_state(windows, utc(2026, 10, 24, 12, 0)).next_open == utc(2026, 10, 24, 20, 0)
        assert window_state(windows, utc(2026, 10, 25, 3, 59)).open
        assert not window_state(windows, utc(2026, 10, 25, 4, 0)).open

    def test_window_in_the_repeated_hour_is_open_both_times(self) -> None:
        """02:00-02:30 on the autumn-change night is open in both passes of the clock."""
        windows = (allow("02:00", "02:30", PRAGUE, frozenset({SUN})),)
        assert window_state(windows, utc(2026, 10, 25, 0, 15)).open  # 02:15 CEST
        assert window_state(windows, utc(2026, 10, 25, 0, 45)) == WindowState(
            False, utc(2026, 10, 25, 1, 0)
        )  # 02:45 CEST; the clock reads 02:00 again at 01:00 UTC
        assert window_state(windows, utc(2026, 10, 25, 1, 15)).open  # 02:15 CET
        assert not window_state(windows, utc(2026, 10, 25, 1, 30)).open

    def test_half_hour_dst_zone(self) -> None:
        """Lord Howe moves its clock by 30 minutes; a window at 02:00-03:00 still follows it."""
        windows = (allow("02:00", "03:00", "Australia/Lord_Howe"),)
        # 2026-10-04 02:00 LHST (+10:30) -> 02:30 LHDT (+11): opens at the jump, 15:30 UTC.
        assert window_state(windows, utc(2026, 10, 3, 12, 0)).next_open == utc(2026, 10, 3, 15, 30)


# ----------------------------------------------------------------- properties

ZONES = ["UTC", PRAGUE, "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
minutes = st.integers(0, 1439)


@st.composite
def window(draw: st.DrawFn) -> Window:
    start = draw(minutes)
    end = draw(st.integers(0, 1440).filter(lambda e: e % 1440 != start or e == 1440))
    days = frozenset(draw(st.lists(st.integers(0, 6), min_size=1, max_size=7)))
    return Window(
        draw(st.sampled_from(["allow", "deny"])), days, start, end, draw(st.sampled_from(ZONES))
    )


windows_lists = st.lists(window(), max_size=3).map(tuple)
#: 2026's clock changes in the zones above: Prague, New York and Lord Howe, spring and autumn.
CHANGES = [
    utc(2026, 3, 29, 1, 0),
    utc(2026, 10, 25, 1, 0),
    utc(2026, 3, 8, 7, 0),
    utc(2026, 11, 1, 6, 0),
    utc(2026, 4, 4, 15, 0),
    utc(2026, 10, 3, 15, 30),
]
anywhen = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
# Half of the instants fall in the two days before a clock change, or just after one.
near_change = st.builds(
    lambda change, seconds: change + timedelta(seconds=seconds),
    st.sampled_from(CHANGES),
    st.integers(-2 * 86400, 3 * 3600),
)
instants = st.one_of(anywhen, near_change)


def brute_next_open(
    windows: tuple[Window, ...], now: datetime, horizon: timedelta
) -> datetime | None:
    """The first whole UTC minute after ``now`` that is open (every zone tested moves by minutes)."""
    t = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= now + horizon:
        if is_open(windows, t):
            return t
        t += timedelta(minutes=1)
    return None


class TestProperties:
    @given(windows_lists, instants)
    def test_open_means_no_deny_and_some_allow(
        self, windows: tuple[Window, ...], now: datetime
    ) -> None:
        """Open at t: no deny window covers t and, if there are allow windows, one covers t."""
        state = window_state(windows, now)
        denied = any(window_covers(w, now) for w in windows if w.kind == "deny")
        allows = [w for w in windows if w.kind == "allow"]
        allowed = not allows or any(window_covers(w, now) for w in allows)
        assert state.open == (not denied and allowed)
        assert state.next_open is None or not state.open

    @given(windows_lists, instants)
    def test_next_open_is_open_and_the_second_before_is_not(
        self, windows: tuple[Window, ...], now: datetime
    ) -> None:
        """next_open lies ahead, is open, and the second before it is still closed."""
        state = window_state(windows, now)
        if state.next_open is not None:
            assert state.next_open > now
            assert is_open(windows, state.next_open)
            assert not is_open(windows, state.next_open - timedelta(seconds=1))

    @settings(max_examples=30, deadline=None)
    @given(windows_lists, instants)
    def test_next_open_is_the_first_open_minute(
        self, windows: tuple[Window, ...], now: datetime
    ) -> None:
        """Nothing between now and next_open is open: it equals a minute-by-minute search."""
        horizon = timedelta(days=2)
        state = window_state(windows, now, horizon=horizon)
        if not state.open:
            assert state.next_open == brute_next_open(windows, now, horizon)
