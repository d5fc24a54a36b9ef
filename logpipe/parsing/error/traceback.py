"""Split a record at a Python traceback into ``error.message``, ``error.stack``, ``error.kind``."""

from __future__ import annotations

import re

MARKER = "Traceback (most recent call last):"
# The exception line that ends a traceback: a dotted class name, then ": message" or nothing.
_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*)(?::(?: |$)|$)")
_FRAME_LINE = re.compile(r"\s*File \"")


def split_traceback(body: str) -> dict[str, str] | None:
    """``{"message", "stack", "kind"}`` when ``body`` holds a traceback, else None.

    As Datadog's pipeline does: the text before the marker is the message, the text after it
    (leading whitespace dropped) the stack. The kind is the class on the exception line that
    follows the last frame (``ValueError``, ``app.PaymentDeclined``).
    """
    cut = body.find(MARKER)
    if cut < 0:
        return None
    stack = body[cut + len(MARKER) :].lstrip()
    error = {"message": body[:cut].strip(), "stack": stack}
    kind = exception_kind(stack)
    if kind:
        error["kind"] = kind
    return error


def exception_kind(stack: str) -> str | None:
    """The exception class of the last traceback in ``stack``."""
    lines = stack.split("\n")
    frame = _FRAME_LINE.match
    last_frame = next((i for i in range(len(lines) - 1, -1, -1) if frame(lines[i])), -1)
    for line in lines[last_frame + 1 :]:
        if line and not line[0].isspace():
            match = _EXCEPTION_LINE.match(line)
            return match.group(1) if match else None
    return None


# Messages logged with a traceback that say nothing of the error itself: then the error's
# message is the exception's own text (gunicorn, uvicorn, asyncio, Django, Celery).
GENERIC_MESSAGES = (
    "Error handling request",
    "Exception in ASGI application",
    "Exception in worker process",
    "Socket error processing request",
    "Exception in callback",
    "Task exception was never retrieved",
    "Unhandled exception",
    "Internal Server Error",
)


def logged_error(body: str) -> dict[str, str] | None:
    """``split_traceback(body)``, but for a traceback logged under a generic message
    (``Error handling request /x``, ``Exception in ASGI application``) or none at all (a JSON
    line's ``exc_info``), ``message`` is the exception's own text: ``ValueError: boom`` gives
    the message ``boom`` (the logged message stays the event's). The kind is as before."""
    error = split_traceback(body)
    if error is None:
        return None
    logged = error["message"]
    if not logged or logged.startswith(GENERIC_MESSAGES):
        own = exception_message(error["stack"])
        if own is not None:
            error["message"] = own
    return error


def exception_message(stack: str) -> str | None:
    """The text of the last exception of ``stack`` (after ``Kind: ``, its following lines
    included); None when there is no exception line, or it has no text."""
    lines = stack.split("\n")
    frame = _FRAME_LINE.match
    last_frame = next((i for i in range(len(lines) - 1, -1, -1) if frame(lines[i])), -1)
    for index in range(last_frame + 1, len(lines)):
        line = lines[index]
        if line and not line[0].isspace():
            match = _EXCEPTION_LINE.match(line)
            if match is None:
                return None
            text = "\n".join([line[match.end() :], *lines[index + 1 :]]).strip()
            return text or None
    return None
