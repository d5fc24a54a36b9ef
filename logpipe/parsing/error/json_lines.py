"""JSON error lines (python-json-logger and the like): one object per line to one event.

Keys are mapped as logging names them and as users commonly rename them: ``level`` or
``levelname`` to ``level`` and ``status``; ``message`` or ``msg`` to ``message``; ``time``,
``asctime``, ``timestamp`` or ``@timestamp`` to ``timestamp``; ``process`` to ``pid``;
``logger`` or ``name`` to ``logger.name`` (and threadName, funcName... to ``logger.*``, as in
text layouts); ``exc_info`` (a traceback) to ``error.*``, else ``stack_info`` to
``error.stack``. Other keys are kept as attributes.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from copy import deepcopy
from typing import Any

import orjson

from logpipe.event import ERROR_LOGGER, Event
from logpipe.parsing.attributes import STATUSES
from logpipe.parsing.error.traceback import MARKER, logged_error
from logpipe.parsing.timestamps import json_time_ms

MESSAGE_KEYS = ("message", "msg")
LEVEL_KEYS = ("level", "levelname")
TIME_KEYS = ("time", "asctime", "timestamp", "@timestamp")
LOGGER_KEYS = ("logger", "name")
# logging's other attributes, to the ``logger.*`` key the text layouts give them too
LOGGER_FIELDS = {
    "threadName": "thread_name",
    "funcName": "method_name",
    "thread": "thread_id",
    "module": "module",
    "filename": "file_name",
    "pathname": "path",
    "lineno": "line",
    "processName": "process_name",
}
# Event keys logpipe writes itself: a JSON key of that name is kept as ``json.<key>``.
RESERVED = frozenset(
    {"ddsource", "logpipe", "error", "status", "level", "pid", "logger", "timestamp"}
)


def json_record(text: str) -> dict[str, Any] | None:
    """The object on a JSON line, or None when ``text`` is not one."""
    if not text.startswith("{"):
        return None
    try:
        value = orjson.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def json_event(
    text: str,
    record: dict[str, Any],
    zone: datetime.tzinfo | None,
    attributes: Mapping[str, Any],
    bookkeeping: dict[str, Any] | None = None,
) -> Event:
    """The event for one JSON line's object (``record``, consumed)."""
    message = _take(record, MESSAGE_KEYS)
    logger: dict[str, Any] = {"name": ERROR_LOGGER}
    name = _take(record, LOGGER_KEYS)
    if isinstance(name, dict):
        logger.update(name)
    elif name is not None:
        logger["name"] = str(name)
    for key, field in LOGGER_FIELDS.items():
        if key in record:
            logger[field] = record.pop(key)
    event: Event = {
        "message": text if message is None else _text(message),
        "ddsource": "gunicorn",
        "logger": logger,
    }
    level = _take(record, LEVEL_KEYS)
    if level is not None:
        level = _text(level)
        event["level"] = level
        event["status"] = STATUSES[level]
    for key in TIME_KEYS:
        if key in record:
            timestamp = json_time_ms(record[key], zone)
            if timestamp is not None:
                del record[key]
                event["timestamp"] = timestamp
                break
    process = record.pop("process", None)
    if isinstance(process, int) and not isinstance(process, bool):
        event["pid"] = process
    elif isinstance(process, str) and process.isdigit():
        event["pid"] = int(process)
    elif process is not None:
        record["process"] = process
    error = _error(record.pop("exc_info", None), record.pop("stack_info", None))
    if error is not None:
        event["error"] = error
    for key, value in record.items():
        event[f"json.{key}" if key in RESERVED else key] = value
    for key, value in attributes.items():
        event[key] = deepcopy(value) if isinstance(value, (dict, list, set, bytearray)) else value
    if bookkeeping is not None:
        event["logpipe"] = bookkeeping
    return event


def _take(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value of the first of ``keys`` in ``record``, taken out of it (None: none there)."""
    for key in keys:
        if key in record:
            return record.pop(key)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _error(exc_info: Any, stack_info: Any) -> dict[str, str] | None:
    if isinstance(exc_info, str) and exc_info:
        if MARKER in exc_info:
            error = logged_error(exc_info)
            if error is not None:
                return error
        return {"stack": exc_info}
    if isinstance(stack_info, str) and stack_info:
        return {"stack": stack_info}
    return None
