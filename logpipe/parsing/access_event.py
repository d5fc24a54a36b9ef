"""Atom values of one access line to an event with Datadog's standard attributes.

``AccessEventPlan`` is made once per format: it keeps, for the format's atoms only, the small
function that writes each atom's attributes, so building an event costs one call per atom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from logpipe.enrich import query_map, split_url, status_attributes
from logpipe.timestamps import access_time_ms
from logpipe.useragent import useragent_details

Event = dict[str, Any]
Attributes = dict[str, Any]

ACCESS_LOGGER = "gunicorn.access"
# The attribute Datadog's pipeline gives the X-Forwarded-For field; used for that header anywhere.
FORWARDED_FOR_KEY = "{x-forwarded-for}i"
_BRACED_PARENTS = {"i": ("request", "headers"), "o": ("response", "headers"), "e": ("environ",)}


def repair_mojibake(text: str) -> str:
    """Undo gunicorn's latin-1 decoding of UTF-8 header bytes (``cafÃ©`` -> ``café``) if it fits."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return text


def unescape(value: str) -> str:
    """Undo gunicorn's only escape: ``"`` printed as ``\\"``."""
    return value.replace('\\"', '"') if '\\"' in value else value


Writer = Callable[[Event, Attributes, Attributes, str], None]
"""Writes one atom's attributes: (event, its http object, its network object, the raw value)."""

_LOGGER = {"name": ACCESS_LOGGER}


def _time(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    timestamp = access_time_ms(value)
    if timestamp is not None:
        event["timestamp"] = timestamp


def _remote_addr(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    if value:
        network["client"] = {"ip": value}


def _ident(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    if value != "-":
        http["ident"] = value


def _user(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    if value != "-":
        http["auth"] = unescape(value)


def _request_line(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    method, _, rest = value.partition(" ")
    url, _, protocol = rest.rpartition(" ")
    url = unescape(url)
    http["method"] = method
    http["url"] = url
    http["version"] = protocol.removeprefix("HTTP/")
    http["url_details"] = split_url(url)


def _status(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    code = int(value)
    http["status_code"] = code
    status_class, category, event["status"] = status_attributes(code)
    if status_class:
        http["status_class"] = status_class
    if category:
        http["status_category"] = category


def _bytes_sent(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    if value != "-":
        network["bytes_written"] = int(value)


def _pid(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    event["pid"] = int(value[1:-1])


def _header_text(attribute: str) -> Writer:
    def write(event: Event, http: Attributes, network: Attributes, value: str) -> None:
        if value != "-":
            http[attribute] = repair_mojibake(unescape(value))

    return write


def _user_agent(event: Event, http: Attributes, network: Attributes, value: str) -> None:
    if value != "-":
        agent = http["useragent"] = repair_mojibake(unescape(value))
        if agent:
            http["useragent_details"] = useragent_details(agent)


def _braced(key: str) -> Writer:
    """``%({name}i)s`` / ``o`` / ``e`` under http.request.headers / response.headers / environ."""
    if key == FORWARDED_FOR_KEY:
        return _header_text("_x_forwarded_for")
    path, name = _BRACED_PARENTS[key[-1]], key[1:-2]

    def write(event: Event, http: Attributes, network: Attributes, value: str) -> None:
        if value != "-":
            node = http
            for part in path:
                node = node.setdefault(part, {})
            node[name] = repair_mojibake(unescape(value))

    return write


WRITERS: dict[str, Writer] = {
    "t": _time,
    "h": _remote_addr,
    "l": _ident,
    "u": _user,
    "r": _request_line,
    "s": _status,
    "b": _bytes_sent,
    "B": _bytes_sent,
    "f": _header_text("referer"),
    "a": _user_agent,
    "p": _pid,
}
REQUEST_PARTS = ("m", "U", "q", "H")  # used when the format has no %(r)s
# Duration atoms, most precise first, with their conversion to nanoseconds.
DURATIONS: dict[str, Callable[[str], int]] = {
    "D": lambda micros: int(micros) * 1_000,
    "L": lambda decimal: int(decimal.replace(".", "")) * 1_000,  # always six decimals
    "M": lambda millis: int(millis) * 1_000_000,
    "T": lambda seconds: int(seconds) * 1_000_000_000,
}


def writer_for(key: str) -> Writer | None:
    """The writer of one atom (keyed like gunicorn's atoms), None if it writes nothing itself."""
    if key in WRITERS:
        return WRITERS[key]
    if key.startswith("{") and key[-1:] in _BRACED_PARENTS and key[-2:-1] == "}":
        return _braced(key)
    return None


class AccessEventPlan:
    """Builds events for one format: only the writers of the atoms that format has."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        position = {key: index for index, key in enumerate(self.keys)}
        self._writers = tuple(
            (index, writer) for index, key in enumerate(self.keys) if (writer := writer_for(key))
        )
        self._request = (
            tuple(position.get(key) for key in REQUEST_PARTS)
            if "r" not in position and not position.keys().isdisjoint(REQUEST_PARTS)
            else None
        )
        self._duration = next(
            ((position[key], convert) for key, convert in DURATIONS.items() if key in position),
            None,
        )

    def build(self, message: str, values: Sequence[str]) -> Event:
        """The event for one line, from its atom values in ``keys`` order."""
        event: Event = {
            "message": message,
            "ddsource": "gunicorn",
            "logger": _LOGGER,
            "status": "info",
        }
        http: Attributes = {}
        network: Attributes = {}
        for index, write in self._writers:
            write(event, http, network, values[index])
        if self._request is not None:
            _request_parts(http, *(None if i is None else values[i] for i in self._request))
        if self._duration is not None:
            index, convert = self._duration
            event["duration"] = convert(values[index])
        if http:
            event["http"] = http
        if network:
            event["network"] = network
        return event


def _request_parts(
    http: Attributes, method: str | None, path: str | None, query: str | None, protocol: str | None
) -> None:
    """Request attributes from ``%(m)s %(U)s %(q)s %(H)s`` (a format without ``%(r)s``)."""
    if method:
        http["method"] = method
    if protocol:
        http["version"] = protocol.removeprefix("HTTP/")
    details: Attributes = {}
    if path is not None and path != "None":
        details["path"] = repair_mojibake(unescape(path))
    if query:
        details["queryString"] = query_map(unescape(query))
    if "path" in details:
        http["url"] = details["path"] + ("?" + unescape(query) if query else "")
    if details:
        http["url_details"] = details
