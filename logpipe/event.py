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


# Datadog's saved view "Bot errors" (gunicorn integration): the one definition of a bot error,
# used by the metric requests.bot_errors, the replay summary and its report.
BOT_ERRORS_QUERY = "@http.useragent_details.browser.family:*bot* @http.status_code:[400 TO 599]"
BOT_WORD = "bot"  # the query's `*bot*`: Datadog's attribute search is case-sensitive


def bot_error(http: dict[str, Any]) -> str | None:
    """The browser family when the saved view "Bot errors" selects this request, else None.

    Exactly the view's query: ``http.status_code`` from 400 to 599 and
    ``http.useragent_details.browser.family`` containing ``bot``, matched case-sensitively as
    Datadog matches an attribute value against a wildcard (``Googlebot``, ``bingbot``,
    ``Applebot``; not ``YandexBot`` or ``AhrefsBot``: those are in ``bot_kind``, not here).
    """
    code = http.get("status_code")
    if type(code) is not int or not 400 <= code <= 599:
        return None
    details = http.get("useragent_details")
    if not isinstance(details, dict):
        return None
    browser = details.get("browser")
    family = browser.get("family") if isinstance(browser, dict) else None
    return family if isinstance(family, str) and BOT_WORD in family else None
