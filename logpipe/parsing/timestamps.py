"""Log timestamps to epoch milliseconds (UTC)."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping

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


# --- Python logging's times (error-log layouts from a logging format, JSON error lines)
#
# logging writes asctime with time.strftime(datefmt, time.localtime(created)): local time,
# with an offset only when the datefmt has %z. A time without an offset is read in a zone:
# a zoneinfo zone (``--timezone``) or, for None, the machine's local zone, as logging used.


def zone_named(name: str | None) -> datetime.tzinfo | None:
    """The zone ``name`` (an IANA name such as ``Europe/Paris``, or ``UTC``); None for None or
    ``local`` (the machine's local zone). ValueError for an unknown name."""
    if name is None or name == "local":
        return None
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error


_UTC_NAMES = frozenset({"UTC", "GMT", "Z", "UCT"})


def local_time_ms(
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int,
    micro: int,
    zone: datetime.tzinfo | None,
    zone_name: str | None = None,
) -> int | None:
    """Epoch ms of a wall-clock time in ``zone`` (None: the local zone); None if invalid.

    A time a DST change makes occur twice is its first occurrence unless ``zone_name`` (what
    %Z printed: CEST, CET) names the second; a time it skips is read with the offset before it
    (as PEP 495 does).
    """
    if zone_name in _UTC_NAMES:
        zone = datetime.UTC
    leap = second == 60  # time.strftime may print a leap second; datetime has none
    try:
        wall = datetime.datetime(year, month, day, hour, minute, second - leap, tzinfo=zone)
    except ValueError:
        return None
    if zone_name and _zone_name(wall, zone) != zone_name:
        later = wall.replace(fold=1)
        if _zone_name(later, zone) == zone_name:
            wall = later
    return (int(wall.timestamp()) + leap) * 1000 + micro // 1000


def _zone_name(wall: datetime.datetime, zone: datetime.tzinfo | None) -> str | None:
    if zone is None:
        return wall.astimezone().tzname()
    return wall.tzname()


def directive_time_ms(fields: Mapping[str, str], zone: datetime.tzinfo | None) -> int | None:
    """Epoch ms of what strftime printed for each directive (``{"Y": "2026", "m": "12"...}``),
    or None: without %z, the time is read in ``zone`` (None: the local zone), %Z choosing
    between the two occurrences of a time a DST change repeats. %y is read as strptime reads
    it; a missing %Y/%y is this year, missing %H/%M/%S are 0; %f printed as ``%f`` (by
    time.strftime) is 0."""
    try:
        if "Y" in fields:
            year = int(fields["Y"])
        elif "y" in fields:
            short = int(fields["y"])
            year = short + (2000 if short < 69 else 1900)
        else:
            year = datetime.date.today().year
        month = int(fields["m"]) if "m" in fields else _MONTHS[fields["b"]]
        day = int(fields["d"])
        if "H" in fields:
            hour = int(fields["H"])
        elif "I" in fields:
            hour = int(fields["I"]) % 12 + (12 if fields.get("p") == "PM" else 0)
        else:
            hour = 0
        minute, second = int(fields.get("M", 0)), int(fields.get("S", 0))
        micro_text = fields.get("f", "%f")
        micro = 0 if micro_text == "%f" else int(micro_text)
        if "z" in fields:
            seconds = _civil_seconds(year, month, day, hour, minute, second)
            return (seconds - _offset_seconds(fields["z"])) * 1000 + micro // 1000
    except (KeyError, ValueError, OverflowError):
        return None
    return local_time_ms(year, month, day, hour, minute, second, micro, zone, fields.get("Z"))


_LOGGING_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r" ?(Z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)
_EPOCH = re.compile(r"\d{9,11}(?:\.\d*)?", re.ASCII)


def json_time_ms(value: object, zone: datetime.tzinfo | None) -> int | None:
    """A JSON log's time to epoch ms, or None: epoch seconds (a number, or digits in a
    string; 13-digit epoch milliseconds too), logging's asctime ``2026-12-02 03:40:00,544``,
    ISO 8601 with or without an offset (``2026-12-02T03:40:00.544+01:00``, ``...Z``). A time
    without an offset is read in ``zone`` (None: the local zone)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _epoch_ms(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _EPOCH.fullmatch(text):
        return _epoch_ms(float(text))
    if text.isdigit() and len(text) == 13:
        return int(text)
    found = _LOGGING_TIME.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if offset is None:
        return local_time_ms(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, zone
        )
    east = 0 if offset == "Z" else _offset_seconds(_hhmm(offset))
    try:
        seconds = _civil_seconds(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0)
        )
    except ValueError:
        return None
    return (seconds - east) * 1000 + micro // 1000


def _hhmm(offset: str) -> str:
    """``+01:00``, ``+0100`` or ``+01`` to ``+0100``."""
    digits = offset[1:].replace(":", "")
    return offset[0] + digits.ljust(4, "0")


def _epoch_ms(seconds: float) -> int | None:
    if seconds != seconds or abs(seconds) >= 1e14:  # NaN, or past year 5 million
        return None
    if abs(seconds) >= 1e11:  # milliseconds (13 digits), not seconds
        return math.floor(seconds)
    return math.floor(seconds * 1000 + 1e-3)  # (1.544 is 1.5439999... as a float)
