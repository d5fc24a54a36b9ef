"""What every command does in its own process: pace the cycle collector, say things on
stderr (as text, or as JSON lines for a log shipper: ``--log-format``), stop on SIGINT and
SIGTERM."""

from __future__ import annotations

import datetime
import gc
import signal
import sys
import threading

LOG_FORMATS = ("text", "json")
DEBUG, INFO, WARNING, ERROR = "debug", "info", "warning", "error"
# A message starting with one of these says its own level (text shows it as it is).
_PREFIXES = ((f"{DEBUG}: ", DEBUG), ("status: ", INFO))

_log_format = "text"


def relax_gc() -> None:
    """Run the cycle collector rarely: events are acyclic dicts, freed as soon as written, and
    with the default threshold the collector would walk the young objects every ~90 events.
    Objects alive now (grammars, caches) are moved out of its sight for good."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def set_log_format(log_format: str) -> None:
    """How this process says things from now on: ``text`` (``logpipe: message``) or ``json``
    (one object per line: timestamp, level, logger, message)."""
    global _log_format
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    _log_format = log_format


def warn(message: str, *, level: str | None = None) -> None:
    """One line on stderr: ``logpipe: message``, or its JSON object. The level is ``level``,
    else the one a ``debug:`` or ``status:`` prefix says, else warning."""
    sys.stderr.write(message_line(message, level))
    sys.stderr.flush()


def say_error(message: str) -> None:
    """A problem that ends the command: ``logpipe: error: message``, or its JSON object."""
    warn(f"error: {message}", level=ERROR)


def message_line(message: str, level: str | None = None) -> str:
    """The line ``warn`` writes, newline included."""
    if _log_format == "text":
        return f"logpipe: {message}\n"
    if level is None:
        level = WARNING
        for prefix, said in _PREFIXES:
            if message.startswith(prefix):
                level = said
                break
    if level in (DEBUG, ERROR):
        message = message.removeprefix(f"{level}: ")
    import orjson  # here: a text run does not need it

    now = datetime.datetime.now(datetime.UTC)
    line = {
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "logger": "logpipe",
        "message": message,
    }
    return orjson.dumps(line).decode() + "\n"


def stop_on_signals() -> tuple[threading.Event, list[signal.Signals]]:
    """An event set by SIGINT or SIGTERM, and the signals received (the command finishes what is
    in flight, then stops)."""
    stop = threading.Event()
    received: list[signal.Signals] = []

    def request_stop(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum))
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return stop, received
