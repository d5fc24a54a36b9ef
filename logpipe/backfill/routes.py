"""Request paths as routes: the ids in them collapsed into placeholders, so that
``/api/v1/orders/1234`` and ``/api/v1/orders/1235`` count as one row, ``/api/v1/orders/{id}``.

A path segment (between slashes) is replaced whole when it is

- a number: ``{id}``;
- a UUID: ``{uuid}``;
- hex of 8 or more characters with a digit in it (hashes, object ids): ``{hex}``;
- a token: 16 or more URL-safe base64 characters (letters, digits, ``-``, ``_``, ``=``) with
  both a digit and a letter in it: ``{token}``.

Other segments (words, ``v1``, ``static``, file names) are kept as they are. A route is its own
route: placeholders hold no digit, so they are never collapsed again.
"""

from __future__ import annotations

import re

from logpipe.memo import Memo

ID, UUID, HEX, TOKEN = "{id}", "{uuid}", "{hex}", "{token}"
MIN_HEX = 8
MIN_TOKEN = 16
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_TOKEN = re.compile(r"[A-Za-z0-9_=-]+")
_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")


def segment_pattern(segment: str) -> str:
    """The placeholder for an id segment, else the segment itself."""
    if segment.isdecimal() and segment.isascii():
        return ID
    if len(segment) < MIN_HEX or _DIGIT.search(segment) is None:
        return segment
    if len(segment) == 36 and _UUID.fullmatch(segment):
        return UUID
    if _HEX.fullmatch(segment):
        return HEX
    if len(segment) >= MIN_TOKEN and _TOKEN.fullmatch(segment) and _LETTER.search(segment):
        return TOKEN
    return segment


def route(path: str) -> str:
    """``path`` with its id segments collapsed: ``/users/42/orders`` -> ``/users/{id}/orders``."""
    if _DIGIT.search(path) is None:
        return path  # nothing to collapse: every placeholder needs a digit
    return "/".join(segment_pattern(segment) for segment in path.split("/"))


def memoized_route(max_size: int = 65_536) -> Memo[str, str]:
    """``route`` behind a bounded memo (``memo[path]``): paths repeat, in a replay's hot loop."""
    return Memo(route, max_size)
