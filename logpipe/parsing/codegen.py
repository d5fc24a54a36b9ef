"""Event builders compiled per access format or error-record layout (as ``dataclasses`` compiles
``__init__``): small functions with no per-attribute calls and no lookups of what the format
does not have.

A builder's body is a sequence of ``Code`` pieces: lines of Python that work out the event's
top-level attributes into locals, each piece naming the attributes it writes. The builder then
makes the event with one dict display, sized once (no dict grows key by key), holding the
attributes the pieces wrote, and takes out those left without a value. The display also holds
the attributes every event carries (the identity), after the worked-out ones, so that they
replace any of the same name as an update would; then the bookkeeping ``logpipe`` (the
builder's ``bookkeeping`` argument), last, where ``stamp`` puts it: an event's key order does
not depend on the path its line took.

Nothing in an event is shared with another event: the display makes ``logger`` afresh at each
call, and a nested identity attribute is copied.

The source of each builder is registered with ``linecache`` under a name of its own
(``<logpipe access builder 3f2a09c1>``), so that a traceback through a builder shows its lines.
"""

from __future__ import annotations

import linecache
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

Builder = Callable[..., dict[str, Any]]

# Identity values written into the display as literals; mutable ones are copied at each call.
_LITERAL_TYPES = (str, int, bool, type(None))
_MUTABLE_TYPES = (dict, list, set, bytearray)


@dataclass(frozen=True)
class Code:
    """Lines of a builder's body (unindented), and the event attributes they write."""

    lines: tuple[str, ...]
    writes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *lines: str, writes: Iterable[str] = ()) -> Code:
        return cls(lines, frozenset(writes))


def indented(lines: Iterable[str]) -> list[str]:
    """``lines`` one level deeper (the body of an ``if``)."""
    return [f"    {line}" for line in lines]


def literal(text: str) -> str:
    """``text`` as a Python string literal, in double quotes when that needs no escape."""
    quoted = repr(text)
    if quoted.startswith("'") and '"' not in text:  # then ``text`` has no ``'`` either
        return f'"{quoted[1:-1]}"'
    return quoted


def compile_builder(
    kind: str,
    logger: str,
    values: str,
    body: Sequence[Code],
    attributes: Mapping[str, str | None],
    identity: Mapping[str, Any],
    namespace: Mapping[str, Any],
) -> tuple[Builder, str]:
    """``def build(text, <values>, bookkeeping=None)`` and its source.

    Every event starts with ``message`` (the line or record ``text``), ``ddsource`` and
    ``logger.name`` (``logger``). ``body`` works out the other attributes from ``values``;
    ``attributes`` gives, in the event's order, each attribute a piece may write (a local of
    the build) with the test that it has no value (None: it always has one); those the body
    writes are in the event. ``identity``: the attributes every event carries. ``namespace``:
    the names the body reads. ``kind`` ("access", "error") names the builder's source file.
    """
    written = set().union(*(code.writes for code in body))
    entries = {
        "message": "text",
        "ddsource": literal("gunicorn"),
        "logger": f"{{{literal('name')}: {literal(logger)}}}",
        **{name: name for name in attributes if name in written},
    }
    absent = {name: test for name, test in attributes.items() if name in written and test}
    scope = {**namespace}
    for index, (key, value) in enumerate(identity.items()):
        entries[key] = _constant(value, f"IDENTITY_{index}", scope)
        absent.pop(key, None)
    entries["logpipe"] = "bookkeeping"
    absent["logpipe"] = "bookkeeping is None"

    lines = [line for code in body for line in code.lines]
    lines.append("event = {")
    lines += indented(f"{literal(key)}: {value}," for key, value in entries.items())
    lines.append("}")
    for key, test in absent.items():
        lines += [f"if {test}:", f"    del event[{literal(key)}]"]
    lines.append("return event")
    source = f"def build(text, {values}, bookkeeping=None):\n" + "".join(
        f"    {line}\n" for line in lines
    )
    exec(compile(source, _register(kind, source), "exec"), scope)
    return scope["build"], source


def _constant(value: Any, name: str, scope: dict[str, Any]) -> str:
    """The expression for an identity value in the display: a literal, or ``name`` (bound in
    ``scope``), copied at each call when the value is mutable (each event gets its own)."""
    if type(value) in _LITERAL_TYPES:  # (not a subclass: an enum's repr is no literal)
        return literal(value) if isinstance(value, str) else repr(value)
    scope[name] = value
    if isinstance(value, _MUTABLE_TYPES):
        scope["deepcopy"] = deepcopy
        return f"deepcopy({name})"
    return name


def _register(kind: str, source: str) -> str:
    """Put ``source`` in ``linecache`` (tracebacks read it there) under a file name of its own:
    the same for the same source, another for any other."""
    lines = source.splitlines(keepends=True)
    base = f"<logpipe {kind} builder {zlib.crc32(source.encode()):08x}"
    filename, number = f"{base}>", 1
    while linecache.getlines(filename) not in ([], lines):  # another source, same crc
        number += 1
        filename = f"{base}-{number}>"
    linecache.cache[filename] = (len(source), None, lines, filename)
    return filename
