"""Derived attributes, and the processor chain embedders can extend.

logpipe derives Datadog's attributes where their source is parsed, in the same pass that builds
the event: ``status_attributes`` when the status is read, ``split_url`` for the request target,
``useragent_details`` for the user agent, ``datadog_status`` for a level. (Running them as
separate passes over the finished event cost about a microsecond a line, a fifth of the budget.)
Values that repeat are cached, and cached details are shared between events, frozen (``Frozen``
refuses changes: copy one to change it).

A *processor* takes an event, changes it in place and returns it (structlog-style); parsers run
the ``chain`` they are given after building each event, empty by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from logpipe.event import Event, Processor
from logpipe.memo import Memo, frozen

URL_CACHE_SIZE = 8192

# Datadog's category processor on http.status_code (hundreds digit -> category).
_STATUS_CATEGORIES = {2: "Info", 3: "Notice", 4: "Warning", 5: "Error"}

# Datadog's status remapper: case-insensitive prefixes, first match wins.
_STATUS_PREFIXES = (
    ("emerg", "emergency"),
    ("f", "emergency"),
    ("a", "alert"),
    ("c", "critical"),
    ("err", "error"),
    ("w", "warning"),
    ("n", "notice"),
    ("i", "info"),
    ("d", "debug"),
    ("t", "debug"),
    ("v", "debug"),
    ("ok", "ok"),
    ("success", "ok"),
    ("o", "ok"),
    ("s", "ok"),
)


def datadog_status(word: str) -> str:
    """The Datadog log status a level or category word maps to (``info`` when unknown)."""
    lowered = word.lower()
    for prefix, status in _STATUS_PREFIXES:
        if lowered.startswith(prefix):
            return status
    return "info"


def status_attributes(code: int) -> tuple[str | None, str | None, str]:
    """``(http.status_class, http.status_category, status)`` for an HTTP status code.

    ``("4xx", "Warning", "warning")`` for 404; codes outside 100-599 have no class, and codes
    without a category leave the log status at ``info``.
    """
    if not 100 <= code <= 599:
        return None, None, "info"
    category = _STATUS_CATEGORIES.get(code // 100)
    return f"{code // 100}xx", category, datadog_status(category) if category else "info"


def split_url(url: str) -> dict[str, Any]:
    """Split a request target as Datadog's URL parser does (absolute URLs get scheme/host/port)."""
    details: dict[str, Any] = {}
    if "://" in url:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts and parts.scheme and parts.hostname:
            details["scheme"] = parts.scheme
            details["host"] = parts.hostname
            if port is not None:
                details["port"] = port
            url = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    path, _, query = url.partition("#")[0].partition("?")
    details["path"] = path
    if query:
        details["queryString"] = query_map(query)
    return details


def query_map(query: str) -> dict[str, Any]:
    """``a=1&b=2&b=3&flag`` to ``{"a": "1", "b": ["2", "3"], "flag": ""}`` (values decoded).

    Fields are read as ``urllib.parse.parse_qsl(query, keep_blank_values=True)`` reads them
    (tests/unit/test_enrich.py checks this), at a fraction of its cost: a request target seen
    once is a cache miss, and real traffic has many.
    """
    result: dict[str, Any] = {}
    for field in query.split("&"):
        if not field:
            continue
        if "+" in field:  # form encoding: a space
            field = field.replace("+", " ")
        key, _, value = field.partition("=")
        if "%" in field:  # %XX: a byte of UTF-8 (undecodable ones replaced)
            key, value = unquote(key), unquote(value)
        if key in result:
            previous = result[key]
            result[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[key] = value
    return result


# The memos the parsers use: ``STATUSES["WARNING"]``, ``URL_DETAILS["/a?b=c"]``...
STATUSES: Memo[str, str] = Memo(datadog_status, 256)
StatusAttributes = tuple[int, str | None, str | None, str]
# Per status text as logged ("404"): the code, then ``status_attributes`` of it.
STATUS_CODES: Memo[str, StatusAttributes] = Memo(
    lambda text: (int(text), *status_attributes(int(text))), 1024
)
URL_DETAILS: Memo[str, dict[str, Any]] = Memo(lambda url: frozen(split_url(url)), URL_CACHE_SIZE)


def run_chain(event: Event, chain: Sequence[Processor]) -> Event:
    """Run ``event`` through each processor in turn."""
    for processor in chain:
        event = processor(event)
    return event
