"""Log timestamps to epoch milliseconds (UTC)."""

from __future__ import annotations

import datetime

from logpipe.memo import Memo

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def access_time_ms(stamp: str) -> int | None:
    """``[25/Nov/2026:04:22:59 +0000]`` (gunicorn's ``%(t)s``) to epoch ms; None if invalid."""
    try:
        seconds = _civil_seconds(
            int(stamp[8:12]),
            _MONTHS[stamp[4:7]],
            int(stamp[1:3]),
            int(stamp[13:15]),
            int(stamp[16:18]),
            int(stamp[19:21]),
        ) - _offset_seconds(stamp[22:27])
    except (KeyError, ValueError):
        return None
    return seconds * 1000


def error_time_ms(date: str, zone: str) -> int | None:
    """``2026-11-25 04:22:59`` and ``+0000`` (gunicorn's error log) to epoch ms, or None."""
    try:
        return (_date_seconds(date) - _offset_seconds(zone)) * 1000
    except ValueError:
        return None


def app_time_ms(date: str, millis: str) -> int | None:
    """``2017-06-22 09:31:11`` and ``580`` (logging's asctime, UTC) to epoch ms; None if invalid."""
    try:
        return _date_seconds(date) * 1000 + int(millis)
    except ValueError:
        return None


def _date_seconds(date: str) -> int:
    return _civil_seconds(
        int(date[0:4]),
        int(date[5:7]),
        int(date[8:10]),
        int(date[11:13]),
        int(date[14:16]),
        int(date[17:19]),
    )


_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()


def _civil_seconds(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError("date out of range")
    # as calendar.timegm counts (a day past the month's end runs on into the next month)
    days = datetime.date(year, month, 1).toordinal() - _EPOCH_DAY + day - 1
    return ((days * 24 + hour) * 60 + minute) * 60 + second


def _offset_seconds(zone: str) -> int:
    """``+0530`` to seconds east of UTC."""
    if len(zone) != 5 or zone[0] not in "+-":
        raise ValueError(zone)
    seconds = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
    return -seconds if zone[0] == "-" else seconds


def gunicorn_prefix_time_ms(stamp: str) -> int | None:
    """``[2026-11-25 04:22:59 +0000] `` (the error-log prefix, with its space) to epoch ms."""
    return error_time_ms(stamp[1:20], stamp[21:26])


# Times per stamp text: lines written in the same second share one.
ACCESS_TIMES: Memo[str, int | None] = Memo(access_time_ms, 4096)
ERROR_TIMES: Memo[str, int | None] = Memo(gunicorn_prefix_time_ms, 4096)
