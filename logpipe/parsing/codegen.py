"""Event builders compiled per access format or error-record layout (as ``dataclasses`` compiles
``__init__``): small functions with no per-attribute calls and no lookups of what the format
does not have.

A builder runs statements that work out the event's attributes into locals, then makes the event
with one dict display, sized once (no dict grows key by key), and takes out the attributes left
without a value. The display also holds the attributes every event carries (the identity), as
constants after the worked-out ones, so that they replace any of the same name as an update
would; then the bookkeeping ``logpipe`` (the builder's last argument), last, where ``stamp``
puts it: an event's key order does not depend on the path its line took.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Builder = Callable[..., dict[str, Any]]


def compile_builder(
    name: str,
    logger: str,
    values: str,
    statements: str,
    worked_out: Mapping[str, str],
    optional: Mapping[str, str],
    attributes: Mapping[str, Any],
    namespace: Mapping[str, Any],
) -> tuple[Builder, str]:
    """``def build(text, <values>, logpipe=None)`` and its source.

    Every event starts with ``message`` (the line or record ``text``), ``ddsource`` and
    ``logger.name`` (``logger``). ``statements`` (unindented) work out the other attributes from
    ``values``; ``worked_out`` gives each one's expression, in the event's order; ``optional``,
    for those that may have no value, the expression that says so. ``namespace``: the names
    the statements read.
    """
    worked_out = {"message": "text", "ddsource": '"gunicorn"', "logger": "LOGGER", **worked_out}
    given = {key: f"ATTRIBUTE_{index}" for index, key in enumerate(attributes)}
    entries = {**worked_out, **given, "logpipe": "logpipe"}
    absent = {key: test for key, test in optional.items() if key not in given}
    absent["logpipe"] = "logpipe is None"
    lines = [*statements.strip("\n").splitlines()]
    lines.append(
        "event = {" + ", ".join(f"{key!r}: {value}" for key, value in entries.items()) + "}"
    )
    for key, test in absent.items():
        lines += [f"if {test}:", f"    del event[{key!r}]"]
    lines.append("return event")
    source = f"def build(text, {values}, logpipe=None):\n" + "".join(
        f"    {line}\n" for line in lines if line.strip()
    )
    scope = {**namespace, "LOGGER": {"name": logger}}
    scope.update(zip(given.values(), attributes.values(), strict=True))
    exec(compile(source, f"<{name}>", "exec"), scope)
    return scope["build"], source
