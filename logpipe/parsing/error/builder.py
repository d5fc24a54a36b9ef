"""The parts of an error-log record to its event, one builder per record layout.

As for access lines (logpipe/parsing/access/builder.py), a builder is a small function compiled
once, here per set of attributes every event carries (the identity): it works out the event's
attributes into locals and makes the event with one dict display (logpipe/parsing/codegen.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from logpipe.event import ERROR_LOGGER, Event
from logpipe.memo import Memo
from logpipe.parsing.attributes import STATUSES
from logpipe.parsing.codegen import Code, compile_builder
from logpipe.parsing.error.traceback import MARKER, logged_error
from logpipe.parsing.timestamps import ERROR_TIMES, app_time_ms

# (record text, the text of each terminal of its layout, its bookkeeping: logpipe.*) to the event
Build = Callable[[str, Sequence[str], dict[str, Any] | None], Event]

# Levels as logged, to the level and its Datadog status: "[INFO] " -> ("INFO", "info").
LEVELS: Memo[str, tuple[str, str]] = Memo(lambda text: (text[1:-2], STATUSES[text[1:-2]]), 256)
APP_LEVELS: Memo[str, tuple[str, str]] = Memo(lambda text: (text[:-1], STATUSES[text[:-1]]), 256)

# Per record layout (the alternatives of ``start`` in grammars/error_record.lark): the statements
# that work out the event's attributes from the layout's terminals (``parts``). ``message`` is
# the record's message terminal, with its final line break.
LAYOUTS: dict[str, Code] = {
    # [2026-11-25 04:22:59 +0000] [16471] [INFO] message
    "gunicorn_record": Code.of(
        "stamp, process, level, message = parts",
        "level, status = LEVELS[level]",
        "timestamp = ERROR_TIMES[stamp]",
        "pid = int(process[1:-2])",
        writes={"level", "status", "timestamp", "pid"},
    ),
    # [2017-06-22 09:31:11,580] ERROR in app: message (Flask's logging format, UTC)
    "app_record": Code.of(
        "stamp, level, message = parts",
        "level, status = APP_LEVELS[level]",
        "timestamp = app_time_ms(stamp[1:20], stamp[21:24])",
        writes={"level", "status", "timestamp"},
    ),
}
# A traceback in the message is split out (most records have none: no call, no copy for them);
# under a generic message (``Error handling request /x``) the error's message is the exception's
# own text (traceback.logged_error).
TRACEBACK = Code.of(
    "error = logged_error(message[:-1]) if MARKER in message else None", writes={"error"}
)
# The attributes the statements write, in the event's order, each with the test that it has no
# value (then it is left out of the event; None: it always has one).
ATTRIBUTES = {
    "level": None,
    "status": None,
    "timestamp": "timestamp is None",
    "pid": None,
    "error": "error is None",
}

_NAMESPACE = {
    "LEVELS": LEVELS,
    "APP_LEVELS": APP_LEVELS,
    "ERROR_TIMES": ERROR_TIMES,
    "app_time_ms": app_time_ms,
    "MARKER": MARKER,
    "logged_error": logged_error,
}


def error_builds(attributes: Mapping[str, Any]) -> dict[str, Build]:
    """The builder of each record layout, its events carrying ``attributes``."""
    return {layout: error_build(layout, attributes)[0] for layout in LAYOUTS}


def error_build(layout: str, attributes: Mapping[str, Any]) -> tuple[Build, str]:
    """The builder of one record layout (a key of ``LAYOUTS``) and its source."""
    return compile_builder(
        "error",
        ERROR_LOGGER,
        "parts",
        [LAYOUTS[layout], TRACEBACK],
        ATTRIBUTES,
        attributes,
        _NAMESPACE,
    )
