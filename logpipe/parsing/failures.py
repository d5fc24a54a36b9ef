"""Short, stable reasons for lines that do not parse, and the events that keep them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from typing import TYPE_CHECKING, Any

from logpipe.lines import Repairs

if TYPE_CHECKING:
    from lark.exceptions import UnexpectedInput


def reason(error: UnexpectedInput, describe: Callable[[str], str], what: str) -> str:
    """``"access line: no match at column 57, expected %(s)s"`` from a Lark error."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(error, UnexpectedEOF):
        return f"{what}: ends early"
    if isinstance(error, UnexpectedCharacters):
        names = error.allowed or set()
    elif isinstance(error, UnexpectedToken):
        names = error.expected
    else:
        return f"{what}: does not parse"
    expected = sorted({describe(name) for name in names})
    wanted = f", expected {' or '.join(expected)}" if expected else ""
    return f"{what}: no match at column {error.column}{wanted}"


def failed_event(
    text: str,
    cause: str,
    logger: str,
    attributes: Mapping[str, Any],
    bookkeeping: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The event for a line that did not parse: the raw message kept, the reason flagged in
    ``logpipe`` (with the ``bookkeeping``, if any), and the ``attributes`` every event carries
    (nested ones copied: nothing is shared between events)."""
    event: dict[str, Any] = {
        "message": text,
        "ddsource": "gunicorn",
        "logger": {"name": logger},
        "status": "info",
        "logpipe": {"parse_error": cause, **bookkeeping} if bookkeeping else {"parse_error": cause},
    }
    for key, value in attributes.items():
        event[key] = deepcopy(value) if isinstance(value, (dict, list, set, bytearray)) else value
    return event


def flag_repairs(event: dict[str, Any], repairs: Repairs) -> dict[str, Any]:
    """Record in ``logpipe.*`` what line hygiene changed (truncation, bad UTF-8, NUL bytes)."""
    flags = event.setdefault("logpipe", {})
    if repairs.truncated:
        flags["truncated"] = True
    if repairs.invalid_utf8:
        flags["invalid_utf8"] = True
    if repairs.nul_bytes:
        flags["nul_bytes"] = True
    return event
