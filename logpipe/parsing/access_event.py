"""Atom values of one access line to an event with Datadog's standard attributes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from logpipe.enrich import query_map
from logpipe.timestamps import access_time_ms

Event = dict[str, Any]

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


def access_event(message: str, values: Mapping[str, str]) -> Event:
    """The event for one access line from its raw atom values (keyed like gunicorn's atoms)."""
    event: Event = {"message": message, "ddsource": "gunicorn", "logger": {"name": ACCESS_LOGGER}}
    http: dict[str, Any] = {}
    network: dict[str, Any] = {}
    get = values.get

    if stamp := get("t"):
        timestamp = access_time_ms(stamp)
        if timestamp is not None:
            event["timestamp"] = timestamp
    if host := get("h"):
        network["client"] = {"ip": host}
    if (ident := get("l")) and ident != "-":
        http["ident"] = ident
    if (user := get("u")) is not None and user != "-":
        http["auth"] = unescape(user)

    if request := get("r"):
        method, _, rest = request.partition(" ")
        url, _, protocol = rest.rpartition(" ")
        http["method"] = method
        http["url"] = unescape(url)
        http["version"] = protocol.removeprefix("HTTP/")
    else:
        _request_parts(http, get("m"), get("U"), get("q"), get("H"))

    if status := get("s"):
        http["status_code"] = int(status)
    sent = get("b") or get("B")
    if sent and sent != "-":
        network["bytes_written"] = int(sent)
    for key, attribute in (("f", "referer"), ("a", "useragent")):
        value = get(key)
        if value is not None and value != "-":
            http[attribute] = repair_mojibake(unescape(value))

    duration = _duration_ns(get)
    if duration is not None:
        event["duration"] = duration
    if pid := get("p"):
        event["pid"] = int(pid[1:-1])
    for key, value in values.items():
        if key[0] == "{" and value != "-":
            _braced(http, key, repair_mojibake(unescape(value)))

    if http:
        event["http"] = http
    if network:
        event["network"] = network
    return event


def _request_parts(
    http: dict[str, Any],
    method: str | None,
    path: str | None,
    query: str | None,
    protocol: str | None,
) -> None:
    """Request attributes from ``%(m)s %(U)s %(q)s %(H)s`` (a format without ``%(r)s``)."""
    if method:
        http["method"] = method
    if protocol:
        http["version"] = protocol.removeprefix("HTTP/")
    details: dict[str, Any] = {}
    if path is not None and path != "None":
        details["path"] = repair_mojibake(unescape(path))
    if query:
        details["queryString"] = query_map(unescape(query))
    if "path" in details:
        http["url"] = details["path"] + ("?" + unescape(query) if query else "")
    if details:
        http["url_details"] = details


def _duration_ns(get: Any) -> int | None:
    """The request time in ns from the most precise duration atom present."""
    if micros := get("D"):
        return int(micros) * 1_000
    if decimal := get("L"):
        whole, _, fraction = decimal.partition(".")
        return int(whole) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9])
    if millis := get("M"):
        return int(millis) * 1_000_000
    if seconds := get("T"):
        return int(seconds) * 1_000_000_000
    return None


def _braced(http: dict[str, Any], key: str, value: str) -> None:
    """``%({name}i)s`` / ``o`` / ``e`` under http.request.headers / response.headers / environ."""
    if key == FORWARDED_FOR_KEY:
        http["_x_forwarded_for"] = value
        return
    node = http
    for part in _BRACED_PARENTS[key[-1]]:
        node = node.setdefault(part, {})
    node[key[1:-2]] = value
