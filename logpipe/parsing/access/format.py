"""Split a gunicorn ``access_log_format`` into literal text and atoms.

gunicorn renders the format with Python's ``%`` operator over a dict of atoms, so a format is
literal text, ``%%`` and ``%(name)s`` placeholders. Each atom is mapped to the terminal in
``grammars/access_atoms.lark`` that describes the value gunicorn prints for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
COMMON_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s'
FORWARDED_FORMAT = DEFAULT_FORMAT + ' "%({x-forwarded-for}i)s"'
# uvicorn workers (-k uvicorn_worker.UvicornWorker) write uvicorn's own line, gunicorn's format
# ignored; its atoms are named as uvicorn's access formatter names them.
UVICORN_FORMAT = '%(client_addr)s - "%(request_line)s" %(status_code)s'

# What logpipe accepts when no format is given: what Datadog's pipeline accepts.
DEFAULT_FORMATS: tuple[str, ...] = (DEFAULT_FORMAT, COMMON_FORMAT, FORWARDED_FORMAT)

# Atom letter -> terminal of grammars/access_atoms.lark (gunicorn/glogging.py Logger.atoms).
ATOM_TERMINALS: dict[str, str] = {
    "h": "REMOTE_ADDR",
    "l": "DASH",
    "u": "TEXT",
    "t": "REQUEST_TIME",
    "r": "REQUEST_LINE",
    "m": "METHOD",
    "U": "TEXT",
    "q": "NOSPACE",
    "H": "PROTOCOL",
    "s": "STATUS",
    "B": "INTEGER_OR_NONE",
    "b": "INTEGER_OR_DASH",
    "f": "TEXT",
    "a": "TEXT",
    "T": "INTEGER",
    "D": "INTEGER",
    "M": "INTEGER",
    "L": "DECIMAL_SECONDS",
    "p": "PID",
    # uvicorn's access line
    "client_addr": "CLIENT_ADDR",
    "request_line": "REQUEST_LINE",
    "status_code": "STATUS",
}
HEADER_OR_ENVIRON_TERMINAL = "TEXT"
UNKNOWN_ATOM_TERMINAL = "DASH"

# Terminals whose end is not evident from the value alone: the assembled grammar gives them a
# lookahead on what the format says comes next.
OPEN_ENDED_TERMINALS = frozenset({"TEXT", "NOSPACE", "REMOTE_ADDR"})
# Free text may contain any separator: a lookahead stops before it (this keeps lexing linear).
FREE_TEXT_TERMINALS = frozenset({"TEXT"})
# A value of a fixed, distinctive shape (a time, a status...) confirms a split: a lookahead
# stops after the first one.
WEAK_TERMINALS = OPEN_ENDED_TERMINALS | {"DASH"}

_PLACEHOLDER = re.compile(r"%(?:\((?P<name>[^()]*)\)(?P<conversion>[^%(]?)|(?P<percent>%))")
_BRACED = re.compile(r"\{(?P<name>[^{}]*)\}(?P<kind>[ioe])")


class FormatError(ValueError):
    """The access_log_format cannot be understood."""


@dataclass(frozen=True)
class Atom:
    """One ``%(name)s`` placeholder."""

    key: str  # the atom as gunicorn looks it up: "h", "{x-request-id}i" (braced names lower-cased)
    terminal: str  # its value terminal in grammars/access_atoms.lark

    @property
    def open_ended(self) -> bool:
        """Its value's end is found by looking at what follows."""
        return self.terminal in OPEN_ENDED_TERMINALS

    @property
    def free_text(self) -> bool:
        """Its value may contain any separator."""
        return self.terminal in FREE_TEXT_TERMINALS

    @property
    def anchor(self) -> bool:
        """Its value has a fixed, distinctive shape."""
        return self.terminal not in WEAK_TERMINALS


@dataclass(frozen=True)
class Literal:
    """Text printed as is."""

    text: str


Segment = Atom | Literal


def atom_for(name: str) -> Atom:
    """The atom gunicorn prints for ``%(name)s`` (unknown names print ``-``)."""
    if name.startswith("{"):
        key = name.lower()
        terminal = HEADER_OR_ENVIRON_TERMINAL if _BRACED.fullmatch(key) else UNKNOWN_ATOM_TERMINAL
        return Atom(key, terminal)
    return Atom(name, ATOM_TERMINALS.get(name, UNKNOWN_ATOM_TERMINAL))


def parse_format(fmt: str) -> tuple[Segment, ...]:
    """Split ``fmt`` into atoms and literals (adjacent literals merged).

    Raises FormatError for placeholders gunicorn cannot render as text (``%s``, ``%(h)d``, a
    lone ``%``).
    """
    if "\n" in fmt or "\r" in fmt:
        raise FormatError("access format must be a single line")
    segments: list[Segment] = []
    literal = ""
    pos = 0
    for match in _PLACEHOLDER.finditer(fmt):
        literal += _check_literal(fmt, pos, match.start())
        pos = match.end()
        if match["percent"]:
            literal += "%"
            continue
        if match["conversion"] != "s":
            raise FormatError(
                f"unsupported atom syntax {match.group(0)!r} at column {match.start() + 1}: "
                "use %(name)s"
            )
        if literal:
            segments.append(Literal(literal))
            literal = ""
        segments.append(atom_for(match["name"]))
    literal += _check_literal(fmt, pos, len(fmt))
    if literal:
        segments.append(Literal(literal))
    if not any(isinstance(segment, Atom) for segment in segments):
        raise FormatError("access format has no %(name)s atom")
    return tuple(segments)


def _check_literal(fmt: str, start: int, end: int) -> str:
    text = fmt[start:end]
    stray = text.find("%")
    if stray >= 0:
        raise FormatError(
            f"unsupported atom syntax at column {start + stray + 1}: use %(name)s or %%"
        )
    return text
