"""Atom values of one access line to an event with Datadog's standard attributes.

Building events is the hot loop of logpipe, so ``AccessEventPlan`` compiles, once per format, a
small Python function with one block of statements per atom of that format (as ``dataclasses``
compiles ``__init__``): no per-atom calls, no lookups of atoms the format does not have. What
each atom means is written once, below, as a function giving its block for the variable that
holds its raw value; ``AccessEventPlan.source`` shows the function built for a format.

Values are repaired (gunicorn's escapes undone, mojibake fixed) by the statements of a
``Repairs``, which each block asks for where it needs them: ``REPAIRING`` gives them, ``CLEAN``
gives none, for the functions that take lines of ASCII text without a backslash (nearly every
line), whose values have nothing to repair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import time_ns
from typing import Any

from logpipe.event import ACCESS_LOGGER, Event
from logpipe.parsing.attributes import STATUS_CODES, URL_DETAILS, query_map
from logpipe.parsing.bots import USERAGENT_DETAILS
from logpipe.parsing.codegen import Code, compile_builder, indented, literal
from logpipe.parsing.timestamps import ACCESS_TIMES

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


# gunicorn's escape of ``"``, as a literal in a builder's code
_BACKSLASH_QUOTE = literal('\\"')


def _no_repair(x: str) -> list[str]:
    return []


def _repair_quotes(x: str) -> list[str]:
    """Undo gunicorn's escaping of ``"`` in variable ``x`` (calls only when needed)."""
    return [
        f"if {_BACKSLASH_QUOTE} in {x}:",
        f"    {x} = unescape({x})",
    ]


def _repair_header(x: str) -> list[str]:
    """``_repair_quotes``, then mojibake repaired: header text as the client sent it."""
    return [
        *_repair_quotes(x),
        f"if not {x}.isascii():",
        f"    {x} = repair_mojibake({x})",
    ]


@dataclass(frozen=True)
class Repairs:
    """The statements that repair a variable holding a raw value: ``quotes`` for text gunicorn
    escapes, ``header`` for header text."""

    quotes: Callable[[str], list[str]]
    header: Callable[[str], list[str]]


REPAIRING = Repairs(quotes=_repair_quotes, header=_repair_header)
CLEAN = Repairs(quotes=_no_repair, header=_no_repair)  # lines of ASCII without a backslash

# An atom's block: from the variable holding its raw value (a str) and the repairs to make.
# ``http`` and ``network`` are the event's two attribute objects, and its other attributes are
# the locals of TOP_LEVEL (below); helpers are the module's imports above.
Atom = Callable[[str, Repairs], Code]


def _request_time(v: str, repairs: Repairs) -> Code:
    return Code.of(
        f"stamp_ms = ACCESS_TIMES[{v}]",
        "if stamp_ms is not None:",
        "    timestamp = date_access = stamp_ms",
        writes={"timestamp", "date_access"},
    )


def _remote_address(v: str, repairs: Repairs) -> Code:
    return Code.of(
        f"if {v}:",
        f'    network["client"] = {{"ip": {v}}}',
        writes={"network"},
    )


def _client_address(v: str, repairs: Repairs) -> Code:  # uvicorn's "host:port"
    return Code.of(
        f'host, _, port = {v}.rpartition(":")',
        'network["client"] = client = {"ip": host.strip("[]"), "port": int(port)}',
        'if port == "0":  # uvicorn took the client from X-Forwarded-For',
        '    client["from_forwarded_for"] = True',
        writes={"network"},
    )


def _read_time() -> Code:
    """A format without a time: the event is stamped when it is read, and says so."""
    return Code.of(
        "timestamp = time_ns() // 1_000_000",
        "if bookkeeping is None:",
        "    bookkeeping = {}",
        'bookkeeping["timestamp_source"] = "read"',
        writes={"timestamp"},
    )


def _ident(v: str, repairs: Repairs) -> Code:
    return Code.of(
        f'if {v} != "-":',
        f'    http["ident"] = {v}',
        writes={"http"},
    )


def _user(v: str, repairs: Repairs) -> Code:
    return Code.of(
        f'if {v} != "-":',
        *indented(repairs.quotes(v)),
        f'    http["auth"] = {v}',
        writes={"http"},
    )


def _request_line(v: str, repairs: Repairs) -> Code:
    # (a raw UTF-8 target, which gunicorn before 25 serves, is logged decoded as latin-1)
    return Code.of(
        f'method, _, rest = {v}.partition(" ")',
        'url, _, protocol = rest.rpartition(" ")',
        *repairs.header("url"),
        'http["method"] = method',
        'http["url"] = url',
        'http["version"] = protocol.removeprefix("HTTP/")',
        'http["url_details"] = URL_DETAILS[url]',
        writes={"http"},
    )


def _status(v: str, repairs: Repairs) -> Code:
    return Code.of(
        f"code, status_class, category, status = STATUS_CODES[{v}]",
        'http["status_code"] = code',
        "if status_class:",
        '    http["status_class"] = status_class',
        "if category:",
        '    http["status_category"] = category',
        writes={"http", "status"},
    )


def _bytes_sent(v: str, repairs: Repairs) -> Code:  # %(b)s: "-" for none
    return Code.of(
        f'if {v} != "-":',
        f'    network["bytes_written"] = int({v})',
        writes={"network"},
    )


def _body_bytes(v: str, repairs: Repairs) -> Code:  # %(B)s: "-" or "None" for none
    return Code.of(
        f'if {v} not in ("-", "None"):',
        f'    network["bytes_written"] = int({v})',
        writes={"network"},
    )


def _referer(v: str, repairs: Repairs) -> Code:
    return Code.of(
        f'if {v} != "-":',
        *indented(repairs.header(v)),
        f'    http["referer"] = {v}',
        writes={"http"},
    )


def _user_agent(v: str, repairs: Repairs) -> Code:
    return Code.of(
        f'if {v} != "-":',
        *indented(repairs.header(v)),
        f'    http["useragent"] = {v}',
        f"    if {v}:",
        f'        http["useragent_details"] = USERAGENT_DETAILS[{v}]',
        writes={"http"},
    )


def _pid(v: str, repairs: Repairs) -> Code:
    return Code.of(f"pid = int({v}[1:-1])", writes={"pid"})


def _braced(target: str) -> Atom:
    """The atom of a header or environ variable (%({name}i)s...): its value goes to ``target``,
    an expression of the object and key under ``http`` that hold it."""

    def block(v: str, repairs: Repairs) -> Code:
        return Code.of(
            f'if {v} != "-":',
            *indented(repairs.header(v)),
            f"    {target} = {v}",
            writes={"http"},
        )

    return block


ATOMS: dict[str, Atom] = {
    "t": _request_time,
    "h": _remote_address,
    "l": _ident,
    "u": _user,
    "r": _request_line,
    "s": _status,
    "b": _bytes_sent,
    "B": _body_bytes,
    "f": _referer,
    "a": _user_agent,
    "p": _pid,
    FORWARDED_FOR_KEY: _braced('http["_x_forwarded_for"]'),
    "client_addr": _client_address,
    "request_line": _request_line,
    "status_code": _status,
}

REQUEST_PARTS = ("m", "U", "q", "H")
# Duration atoms, most precise first: the expression giving nanoseconds from the raw value.
DURATIONS: dict[str, Callable[[str], str]] = {
    "D": lambda v: f"int({v}) * 1_000",
    "L": lambda v: f'int({v}.replace(".", "")) * 1_000',  # always six decimals
    "M": lambda v: f"int({v}) * 1_000_000",
    "T": lambda v: f"int({v}) * 1_000_000_000",
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


# The event's attributes held in locals while the atoms are read, in the event's order: each
# with its value before any atom sets it, and the test that it has none at the end (then it is
# left out of the event; None: it always has one). A format declares those its atoms write.
TOP_LEVEL: dict[str, tuple[str, str | None]] = {
    "status": ('"info"', None),
    "timestamp": ("None", "timestamp is None"),
    "date_access": ("None", "date_access is None"),  # Datadog's date remapper source, epoch ms
    "http": ("{}", "not http"),
    "network": ("{}", "not network"),
    "duration": ("None", "duration is None"),
    "pid": ("None", "pid is None"),
}

_NAMESPACE = {
    "time_ns": time_ns,
    "ACCESS_TIMES": ACCESS_TIMES,
    "STATUS_CODES": STATUS_CODES,
    "URL_DETAILS": URL_DETAILS,
    "USERAGENT_DETAILS": USERAGENT_DETAILS,
    "query_map": query_map,
    "repair_mojibake": repair_mojibake,
    "request_parts": request_parts,
    "unescape": unescape,
}


class AccessEventPlan:
    """Builds the events of one format: ``build(text, values, bookkeeping=None)``, with values
    in ``keys`` order and ``bookkeeping`` the event's ``logpipe`` object (where the line is
    from), if any. ``clean``: for lines of ASCII text without a backslash only (see above).

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
        repairs = CLEAN if clean else REPAIRING
        names = [f"v{index}" for index in range(len(keys))]
        position = dict(zip(keys, names, strict=True))
        atoms = [_atom(key) for key in keys]
        blocks = [atom(name, repairs) for atom, name in zip(atoms, names, strict=True) if atom]
        if "r" not in position and not position.keys().isdisjoint(REQUEST_PARTS):
            parts = ", ".join(position.get(key, "None") for key in REQUEST_PARTS)
            blocks.append(Code.of(f"request_parts(http, {parts})", writes={"http"}))
        if "t" not in position:
            blocks.append(_read_time())
        duration = next((key for key in DURATIONS if key in position), None)
        if duration:
            nanoseconds = DURATIONS[duration](position[duration])
            blocks.append(Code.of(f"duration = {nanoseconds}", writes={"duration"}))
        # the locals the blocks write, declared with their starting values (status always)
        written = {"status"}.union(*(block.writes for block in blocks))
        local = [name for name in TOP_LEVEL if name in written]
        starts = [f"{name} = {TOP_LEVEL[name][0]}" for name in local]
        unpack = [f"{', '.join(names)}{',' if len(names) == 1 else ''} = values"] if names else []
        self.build, self.source = compile_builder(
            "access",
            ACCESS_LOGGER,
            "values",
            [Code.of(*unpack, *starts, writes=local), *blocks],
            {name: absent for name, (_, absent) in TOP_LEVEL.items()},
            attributes or {},
            _NAMESPACE,
        )


def _atom(key: str) -> Atom | None:
    """What atom ``key`` writes (None: nothing itself, as unknown names, %(l)s-like constants
    and durations)."""
    if key in ATOMS:
        return ATOMS[key]
    if key.startswith("{") and key[-1:] in _BRACED_PARENTS and key[-2:-1] == "}":
        parents = _BRACED_PARENTS[key[-1]]
        path = "".join(f".setdefault({literal(parent)}, {{}})" for parent in parents)
        return _braced(f"http{path}[{literal(key[1:-2])}]")
    return None
