"""The dict display that makes an event, in the event builders compiled per format or layout.

A builder works out an event's attributes into locals, then makes the event with one dict
display, sized once (no dict grows key by key), and takes out the attributes left without a
value. The display also holds the attributes every event carries (the identity), as constants
after the worked-out ones, so that they replace any of the same name as an update would; then
the bookkeeping ``logpipe`` (the builder's argument), last, where ``stamp`` puts it: an event's
key order does not depend on the path its line took.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def event_display(
    worked_out: Mapping[str, str], optional: Mapping[str, str], attributes: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Statements (indented for a function body) that make ``event``, and the names they read
    that the builder's namespace must hold (the attributes' values).

    ``worked_out``: each attribute's expression, in the event's order; ``optional``: for those
    that may have no value, the expression that says so.
    """
    given = {name: f"ATTRIBUTE_{index}" for index, name in enumerate(attributes)}
    entries = {**worked_out, **given, "logpipe": "logpipe"}
    absent = {name: test for name, test in optional.items() if name not in given}
    absent["logpipe"] = "logpipe is None"
    items = ", ".join(f"{name!r}: {value}" for name, value in entries.items())
    lines = [f"event = {{{items}}}"]
    for name, test in absent.items():
        lines += [f"if {test}:", f"    del event[{name!r}]"]
    return "\n".join("    " + line for line in lines), dict(
        zip(given.values(), attributes.values(), strict=True)
    )
