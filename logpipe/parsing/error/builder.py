"""The parts of an error-log record to its event, one builder per record layout.

As for access lines (access_event.py), a builder is a small function compiled once, here per
set of attributes every event carries (the identity): it works out the event's attributes into
locals and makes the event with one dict display (event_builder.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from logpipe.event import ERROR_LOGGER, Event
from logpipe.memo import Memo
from logpipe.parsing.attributes import STATUSES
from logpipe.parsing.codegen import compile_builder
from logpipe.parsing.error.traceback import MARKER, split_traceback
from logpipe.parsing.timestamps import ERROR_TIMES, app_time_ms

# (record text, the text of each terminal of its layout, its bookkeeping: logpipe.*) to the event
Build = Callable[[str, Sequence[str], dict[str, Any] | None], Event]

# Levels as logged, to the level and its Datadog status: "[INFO] " -> ("INFO", "info").
LEVELS: Memo[str, tuple[str, str]] = Memo(lambda text: (text[1:-2], STATUSES[text[1:-2]]), 256)
APP_LEVELS: Memo[str, tuple[str, str]] = Memo(lambda text: (text[:-1], STATUSES[text[:-1]]), 256)

# Per record layout (the alternatives of ``start`` in grammars/error_record.lark): the statements
# that work out the event's attributes from the layout's terminals, and those attributes in the
# event's order. ``message`` is the record's message terminal, with its final line break.
LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # [2026-11-25 04:22:59 +0000] [16471] [INFO] message
    "gunicorn_record": (
        """
stamp, process, level, message = parts
level, status = LEVELS[level]
timestamp = ERROR_TIMES[stamp]
pid = int(process[1:-2])""",
        ("level", "status", "timestamp", "pid", "error"),
    ),
    # [2017-06-22 09:31:11,580] ERROR in app: message (Flask's logging format, UTC)
    "app_record": (
        """
stamp, level, message = parts
level, status = APP_LEVELS[level]
timestamp = app_time_ms(stamp[1:20], stamp[21:24])""",
        ("level", "status", "timestamp", "error"),
    ),
}
# A traceback in the message is split out (most records have none: no call, no copy for them).
_TRACEBACK = "error = split_traceback(message[:-1]) if MARKER in message else None"
_OPTIONAL = ("timestamp", "error")  # left out when None

_NAMESPACE = {
    "LEVELS": LEVELS,
    "APP_LEVELS": APP_LEVELS,
    "ERROR_TIMES": ERROR_TIMES,
    "app_time_ms": app_time_ms,
    "MARKER": MARKER,
    "split_traceback": split_traceback,
}


def error_builds(attributes: Mapping[str, Any]) -> dict[str, Build]:
    """The builder of each record layout, its events carrying ``attributes``."""
    builds = {}
    for layout, (statements, names) in LAYOUTS.items():
        builds[layout], _ = compile_builder(
            f"error event plan {layout}",
            ERROR_LOGGER,
            "parts",
            f"{statements}\n{_TRACEBACK}",
            {name: name for name in names},
            {name: f"{name} is None" for name in _OPTIONAL},
            attributes,
            _NAMESPACE,
        )
    return builds
