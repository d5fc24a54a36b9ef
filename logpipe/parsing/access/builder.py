"""Atom values of one access line to an event with Datadog's standard attributes.

Building events is the hot loop of logpipe, so ``AccessEventPlan`` compiles, once per format, a
small Python function with one statement block per atom of that format (as ``dataclasses``
compiles ``__init__``): no per-atom calls, no lookups of atoms the format does not have. What
each atom means is written once, below, as a statement template over ``$v`` (its raw value);
``AccessEventPlan.source`` shows the function built for a format.

Values are repaired (gunicorn's escapes undone, mojibake fixed) by ``repair`` lines in the
templates. A plan built ``clean`` leaves them out: its function is for lines of ASCII text
without a backslash (nearly every line), whose values have nothing to repair.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from string import Template
from typing import Any

from logpipe.event import ACCESS_LOGGER, Event
from logpipe.parsing.attributes import STATUS_CODES, URL_DETAILS, query_map
from logpipe.parsing.codegen import compile_builder
from logpipe.parsing.timestamps import ACCESS_TIMES
from logpipe.parsing.useragent import USER_AGENTS

# (line, its atom values, its bookkeeping: logpipe.*) to the line's event
Build = Callable[[str, Sequence[str], dict[str, Any] | None], Event]

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


# What a ``repair <kind> <variable>`` line of a template stands for (calls only when needed):
# "quotes" undoes gunicorn's escaping of ``"``; "header" also repairs mojibake, giving header
# text as the client sent it.
REPAIRS = {
    "quotes": """if '\\\\"' in $x:
    $x = unescape($x)""",
    "header": """if '\\\\"' in $x:
    $x = unescape($x)
if not $x.isascii():
    $x = repair_mojibake($x)""",
}

# What each atom writes. `$v` is the atom's raw value (a str); `http` and `network` are the
# event's two attribute objects, and its other attributes are the locals of TOP_LEVEL (below);
# helpers are the module's imports above.
STATEMENTS: dict[str, str] = {
    "t": """
stamp_ms = ACCESS_TIMES[$v]
if stamp_ms is not None:
    timestamp = stamp_ms""",
    "h": """
if $v:
    network["client"] = {"ip": $v}""",
    "l": """
if $v != "-":
    http["ident"] = $v""",
    "u": """
if $v != "-":
    repair quotes $v
    http["auth"] = $v""",
    "r": """
method, _, rest = $v.partition(" ")
url, _, protocol = rest.rpartition(" ")
repair quotes url
http["method"] = method
http["url"] = url
http["version"] = protocol.removeprefix("HTTP/")
http["url_details"] = URL_DETAILS[url]""",
    "s": """
code, status_class, category, status = STATUS_CODES[$v]
http["status_code"] = code
if status_class:
    http["status_class"] = status_class
if category:
    http["status_category"] = category""",
    "b": """
if $v != "-":
    network["bytes_written"] = int($v)""",
    "f": """
if $v != "-":
    repair header $v
    http["referer"] = $v""",
    "a": """
if $v != "-":
    repair header $v
    http["useragent"] = $v
    if $v:
        http["useragent_details"] = USER_AGENTS[$v]""",
    "p": """
pid = int($v[1:-1])""",
    # %({name}i)s, %({name}o)s, %({name}e)s: $path is the chain of parent objects under http.
    "braced": """
if $v != "-":
    repair header $v
    http$path[$name] = $v""",
    # Formats without %(r)s: the request from %(m)s %(U)s %(q)s %(H)s (absent ones are None).
    "request": """
request_parts(http, $m, $U, $q, $H)""",
}
STATEMENTS["B"] = STATEMENTS["b"].replace('!= "-"', 'not in ("-", "None")')
STATEMENTS[FORWARDED_FOR_KEY] = STATEMENTS["braced"].replace("$path[$name]", '["_x_forwarded_for"]')

REQUEST_PARTS = ("m", "U", "q", "H")
# Duration atoms, most precise first: the expression giving nanoseconds from `$v`.
DURATIONS = {
    "D": "int($v) * 1_000",
    "L": 'int($v.replace(".", "")) * 1_000',  # always six decimals
    "M": "int($v) * 1_000_000",
    "T": "int($v) * 1_000_000_000",
}


def request_parts(
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


# The event's attributes held in locals while the atoms are read, in the event's order, each with
# its value before any atom sets it; the event is made from them at the end (event_builder.py),
# without those still None (or empty).
TOP_LEVEL = {
    "status": '"info"',
    "timestamp": "None",
    "http": "{}",
    "network": "{}",
    "duration": "None",
    "pid": "None",
}

_NAMESPACE = {
    "ACCESS_TIMES": ACCESS_TIMES,
    "STATUS_CODES": STATUS_CODES,
    "URL_DETAILS": URL_DETAILS,
    "USER_AGENTS": USER_AGENTS,
    "query_map": query_map,
    "repair_mojibake": repair_mojibake,
    "request_parts": request_parts,
    "unescape": unescape,
}


class AccessEventPlan:
    """Builds the events of one format: ``build(text, values, logpipe=None)``, with values in
    ``keys`` order and ``logpipe`` the event's bookkeeping (where the line is from), if any.
    ``clean``: for lines of ASCII text without a backslash only (see above).

    ``attributes`` (the identity: service, hostname, ddtags) are written into the event's
    display, which costs less than adding them to each finished event; they replace the line's
    attributes of the same name, as an update after the build would.
    """

    def __init__(
        self,
        keys: Sequence[str],
        *,
        clean: bool = False,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.keys = tuple(keys)
        attributes = attributes or {}
        names = [f"v{index}" for index in range(len(self.keys))]
        blocks = [_atom_block(key, name) for key, name in zip(self.keys, names, strict=True)]
        position = dict(zip(self.keys, names, strict=True))
        if "r" not in position and not position.keys().isdisjoint(REQUEST_PARTS):
            parts = {key: position.get(key, "None") for key in REQUEST_PARTS}
            blocks.append(Template(STATEMENTS["request"]).substitute(parts))
        duration = next((key for key in DURATIONS if key in position), None)
        if duration:
            expression = Template(DURATIONS[duration]).substitute(v=position[duration])
            blocks.append(f"duration = {expression}")
        body = _expand_repairs("\n".join(blocks), clean)
        local = [name for name in TOP_LEVEL if name == "status" or re.search(rf"\b{name}\b", body)]
        unpack = ", ".join(names) + ("," if len(names) == 1 else "")
        starts = "".join(f"{name} = {TOP_LEVEL[name]}\n" for name in local)
        self.build, self.source = compile_builder(
            f"access event plan {self.keys}",
            ACCESS_LOGGER,
            "values",
            f"{unpack} = values\n{starts}{body}",
            {name: name for name in local},
            {name: _absent(name) for name in local if name != "status"},
            attributes,
            _NAMESPACE,
        )


def _atom_block(key: str, name: str) -> str:
    """The statements for one atom whose raw value is in variable ``name``."""
    if key in STATEMENTS:
        return Template(STATEMENTS[key]).substitute(v=name)
    if key.startswith("{") and key[-1:] in _BRACED_PARENTS and key[-2:-1] == "}":
        parents = _BRACED_PARENTS[key[-1]]
        path = "".join(f".setdefault({parent!r}, {{}})" for parent in parents)
        return Template(STATEMENTS["braced"]).substitute(v=name, path=path, name=repr(key[1:-2]))
    return ""  # unknown names, %(l)s-like constants and durations write nothing themselves


def _expand_repairs(body: str, clean: bool) -> str:
    """``body`` with each ``repair <kind> <variable>`` line replaced by what ``REPAIRS`` says
    for that kind, indented like it (left out when ``clean``)."""
    lines = []
    for line in body.splitlines():
        words = line.split()
        if words[:1] != ["repair"]:
            lines.append(line)
        elif not clean:
            _, kind, variable = words
            indent = line[: len(line) - len(line.lstrip())]
            code = Template(REPAIRS[kind]).substitute(x=variable)
            lines.extend(indent + statement for statement in code.splitlines())
    return "\n".join(lines)


def _absent(name: str) -> str:
    """The test that the top-level attribute ``name`` (a local of the build) has no value."""
    return f"not {name}" if TOP_LEVEL.get(name) == "{}" else f"{name} is None"
