"""Enrichment: small pure processors over an event dict (structlog-style), run after parsing.

Each processor takes an event, adds derived attributes in place and returns it. The chains used by
the parsers are ``ACCESS_CHAIN`` and ``ERROR_CHAIN``; embedders may pass their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from logpipe.useragent import useragent_details

Event = dict[str, Any]
Processor = Callable[[Event], Event]

# Datadog's category processor on http.status_code.
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


def http_status(event: Event) -> Event:
    """``http.status_class`` (``"4xx"``) and ``http.status_category`` (``"Warning"``)."""
    http: dict[str, Any] | None = event.get("http")
    code = http.get("status_code") if http else None
    if http is not None and code is not None and 100 <= code <= 599:
        http["status_class"] = f"{code // 100}xx"
        category = _STATUS_CATEGORIES.get(code // 100)
        if category:
            http["status_category"] = category
    return event


def log_status(event: Event) -> Event:
    """``status``: from ``http.status_category`` when present, else from ``level``, else info."""
    http = event.get("http")
    word = (http and http.get("status_category")) or event.get("level")
    event["status"] = datadog_status(word) if word else "info"
    return event


def url_details(event: Event) -> Event:
    """``http.url_details``: path, queryString map, and scheme/host/port for absolute URLs."""
    http: dict[str, Any] | None = event.get("http")
    url = http.get("url") if http else None
    if http is not None and url is not None:
        http["url_details"] = split_url(url)
    return event


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
    """``a=1&b=2&b=3&flag`` to ``{"a": "1", "b": ["2", "3"], "flag": ""}`` (values decoded)."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in result:
            previous = result[key]
            result[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            result[key] = value
    return result


def user_agent(event: Event) -> Event:
    """``http.useragent_details``: browser, os and device families, device category (``Bot``...)."""
    http: dict[str, Any] | None = event.get("http")
    agent = http.get("useragent") if http else None
    if http is not None and agent:
        http["useragent_details"] = useragent_details(agent)
    return event


def run_chain(event: Event, chain: Sequence[Processor]) -> Event:
    for processor in chain:
        event = processor(event)
    return event


ACCESS_CHAIN: tuple[Processor, ...] = (http_status, url_details, user_agent, log_status)
ERROR_CHAIN: tuple[Processor, ...] = (log_status,)
