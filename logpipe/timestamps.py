"""Log timestamps to epoch milliseconds (UTC), cheaply: consecutive lines repeat the same second."""

from __future__ import annotations

from calendar import timegm

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


class _LastValue:
    """Remember the last conversion: logs are written in time order, one second at a time."""

    __slots__ = ("key", "value")

    def __init__(self) -> None:
        self.key = ""
        self.value = 0


_access = _LastValue()
_error = _LastValue()


def access_time_ms(stamp: str) -> int | None:
    """``[25/Nov/2026:04:22:59 +0000]`` (gunicorn's ``%(t)s``) to epoch ms; None if invalid."""
    if stamp == _access.key:
        return _access.value
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
    _access.key, _access.value = stamp, seconds * 1000
    return seconds * 1000


def error_time_ms(date: str, zone: str) -> int | None:
    """``2026-11-25 04:22:59`` and ``+0000`` (gunicorn's error log) to epoch ms, or None."""
    key = date + zone
    if key == _error.key:
        return _error.value
    try:
        value = (_date_seconds(date) - _offset_seconds(zone)) * 1000
    except ValueError:
        return None
    _error.key, _error.value = key, value
    return value


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


def _civil_seconds(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int:
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError("date out of range")
    return timegm((year, month, day, hour, minute, second, 0, 0, 0))


def _offset_seconds(zone: str) -> int:
    """``+0530`` to seconds east of UTC."""
    if len(zone) != 5 or zone[0] not in "+-":
        raise ValueError(zone)
    seconds = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
    return -seconds if zone[0] == "-" else seconds
