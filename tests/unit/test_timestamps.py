"""Log timestamps to epoch milliseconds, counted as ``calendar.timegm`` counts."""

from __future__ import annotations

import calendar

from hypothesis import given
from hypothesis import strategies as st

from logpipe.parsing.timestamps import access_time_ms, error_time_ms

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@given(
    year=st.integers(1, 9999),
    month=st.integers(1, 12),
    day=st.integers(1, 31),  # a day past the month's end runs on into the next month
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    second=st.integers(0, 60),
    offset_minutes=st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_times_are_counted_as_timegm_counts(
    year: int, month: int, day: int, hour: int, minute: int, second: int, offset_minutes: int
) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    zone = f"{sign}{abs(offset_minutes) // 60:02d}{abs(offset_minutes) % 60:02d}"
    utc = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset_minutes * 60
    access = (
        f"[{day:02d}/{MONTHS[month - 1]}/{year:04d}:{hour:02d}:{minute:02d}:{second:02d} {zone}]"
    )
    error_date = f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
    assert access_time_ms(access) == utc * 1000
    assert error_time_ms(error_date, zone) == utc * 1000


def test_invalid_times_have_none() -> None:
    assert access_time_ms("[25/Foo/2026:04:22:59 +0000]") is None
    assert error_time_ms("2026-13-01 00:00:00", "+0000") is None
    assert error_time_ms("2026-11-25 24:00:00", "+0000") is None
