"""What flows through the pipeline: the event, its delivery token, and who logged it.

An event is a plain dict of Datadog attributes; a stage that makes one owns it until it hands it
on. A token rides beside each event through the sinks and comes back once the event is delivered,
so that the checkpoint of the file it came from may move past it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
Processor = Callable[[Event], Event]
# What a sink hands back once an event is delivered: in follow mode (file key, end offset).
Token = Any

# ``logger.name`` of each kind of event, as gunicorn names its loggers.
ACCESS_LOGGER = "gunicorn.access"
ERROR_LOGGER = "gunicorn.error"


def origin(path: str | None, offset: int) -> dict[str, str | int]:
    """``logpipe.path`` and ``logpipe.offset`` (the byte offset where the line starts)."""
    return {"path": path, "offset": offset} if path is not None else {"offset": offset}


UNKNOWN_BOT = "unknown"  # the family of a bot whose user agent names none


def bot_family(http: dict[str, Any]) -> str | None:
    """The browser family of a bot's user agent (``http.useragent_details.device.category``
    ``Bot``), else None."""
    details = http.get("useragent_details")
    if not isinstance(details, dict):
        return None
    device = details.get("device")
    if not isinstance(device, dict) or device.get("category") != "Bot":
        return None
    browser = details.get("browser")
    family = browser.get("family") if isinstance(browser, dict) else None
    return family if isinstance(family, str) and family else UNKNOWN_BOT
