"""``ErrorParser``: one gunicorn error-log record (possibly multi-line) to one event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from logpipe.enrich import STATUSES, Event, Processor, run_chain
from logpipe.lines import MAX_LINE_BYTES, decode
from logpipe.memo import Memo
from logpipe.parsing.failures import failed_event, flag_repairs, reason
from logpipe.parsing.fast_error import record_rules
from logpipe.parsing.grammar_files import grammar_text
from logpipe.parsing.traceback import MARKER, split_traceback
from logpipe.parsing.trees import branch_tokens
from logpipe.timestamps import ERROR_TIMES, app_time_ms

if TYPE_CHECKING:
    from lark import Lark

ERROR_LOGGER = "gunicorn.error"
END = "\n"


class ErrorRecordParseError(ValueError):
    """A record without a known error-log prefix."""


@cache
def error_parser() -> Lark:
    """LALR parser for grammars/error_record.lark."""
    from lark import Lark

    return Lark(grammar_text("error_record"), parser="lalr", lexer="contextual")


class ErrorParser:
    """Parse error-log records: gunicorn's prefix or the Flask/app-logging prefix.

    ``parse`` never raises: a record without a known prefix (a stray line written to the error log
    by ``wsgi.errors`` or ``--capture-output``) becomes an event with ``logpipe.parse_error``.
    Every event carries ``attributes`` (the identity: service, hostname, ddtags), which replace
    the record's attributes of the same name.
    """

    def __init__(
        self,
        *,
        max_record_bytes: int = MAX_LINE_BYTES,
        chain: Sequence[Processor] = (),
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.attributes = dict(attributes or {})
        self._rules = record_rules()
        # (match, event builder) per layout, for parse_text's loop
        self._fast = tuple((rule.pattern.match, LAYOUTS[rule.name]) for rule in self._rules)
        self.max_record_bytes = max_record_bytes
        self.chain = tuple(chain)

    def parse(self, record: str | bytes, *, truncated: bool = False) -> Event:
        """The event for one record (``truncated``: the aggregator already cut it)."""
        text, repairs = decode(record, max_bytes=self.max_record_bytes, truncated=truncated)
        event = self.parse_text(text)
        if self.chain:
            event = run_chain(event, self.chain)
        return event if repairs is None else flag_repairs(event, repairs)

    def layout(self, text: str) -> tuple[str, Sequence[str]]:
        """Which record layout ``text`` has (``gunicorn_record``, ``app_record``) and the text of
        each of its terminals; ErrorRecordParseError when it has no known prefix.

        The fast path (the grammar's record rules as regexes) answers for the records it
        matches; the Lark parser takes the rest and explains why they fail.
        """
        line = text + END
        for rule in self._rules:
            found = rule.pattern.match(line)
            if found is not None:
                return rule.name, found.groups()
        return self._lark_layout(line)

    def _lark_layout(self, line: str) -> tuple[str, Sequence[str]]:
        """``layout`` by the Lark parser, for a record (with END) the fast path declined: it
        has no known prefix, and Lark says why from its head."""
        from lark import Tree
        from lark.exceptions import UnexpectedInput

        try:
            tree = error_parser().parse(line if len(line) <= 4096 else line[:4096] + END)
        except UnexpectedInput as error:
            raise ErrorRecordParseError(reason(error, _describe, "error record")) from None
        (branch,) = tree.children
        assert isinstance(branch, Tree)
        return str(branch.data), [str(token) for token in branch_tokens(tree)]

    def parse_text(self, text: str) -> Event:
        """The event for a record already decoded: no NUL byte, within the cap (what ``decode``
        gives; ``parse`` is ``decode`` then this). The processor chain is not run."""
        line = text + END
        for match, build in self._fast:  # (``layout``'s fast path, unrolled here: the hot loop)
            found = match(line)
            if found is not None:
                event = build(text, found.groups())
                break
        else:
            try:
                name, parts = self._lark_layout(line)
            except ErrorRecordParseError as error:
                return failed_event(text, str(error), ERROR_LOGGER, self.attributes)
            event = LAYOUTS[name](text, parts)
        if self.attributes:
            event.update(self.attributes)
        return event


_LOGGER = {"name": ERROR_LOGGER}


def _gunicorn_event(text: str, parts: Sequence[str]) -> Event:
    """``[2026-11-25 04:22:59 +0000] [16471] [INFO] message``"""
    stamp, process, level, message = parts
    event = _record_event(text, LEVELS[level], ERROR_TIMES[stamp], message)
    event["pid"] = int(process[1:-2])
    return event


def _app_event(text: str, parts: Sequence[str]) -> Event:
    """``[2017-06-22 09:31:11,580] ERROR in app: message`` (Flask's logging format, UTC)."""
    stamp, level, message = parts
    timestamp = app_time_ms(stamp[1:20], stamp[21:24])
    return _record_event(text, APP_LEVELS[level], timestamp, message)


def _record_event(text: str, level: tuple[str, str], timestamp: int | None, message: str) -> Event:
    """What every record's event has: message, level and status, time, a split traceback
    (``message``: the record's message terminal, with its final line break)."""
    event: Event = {
        "message": text,
        "ddsource": "gunicorn",
        "logger": _LOGGER,
        "level": level[0],
        "status": level[1],
    }
    if timestamp is not None:
        event["timestamp"] = timestamp
    if MARKER in message:  # (most records have no traceback: no call, no copy for them)
        traceback = split_traceback(message[:-1])
        if traceback:
            event["error"] = traceback
    return event


# Levels as logged, to the level and its Datadog status: "[INFO] " -> ("INFO", "info").
LEVELS: Memo[str, tuple[str, str]] = Memo(lambda text: (text[1:-2], STATUSES[text[1:-2]]), 256)
APP_LEVELS: Memo[str, tuple[str, str]] = Memo(lambda text: (text[:-1], STATUSES[text[:-1]]), 256)


# Event builders by record layout (the alternatives of ``start`` in grammars/error_record.lark).
LAYOUTS = {"gunicorn_record": _gunicorn_event, "app_record": _app_event}


def _describe(terminal: str) -> str:
    return {
        "GUNICORN_TIME": "[YYYY-MM-DD HH:MM:SS +ZZZZ]",
        "APP_TIME": "[YYYY-MM-DD HH:MM:SS,mmm]",
        "PROCESS": "[pid]",
        "LEVEL": "[LEVEL]",
        "APP_LEVEL": "LEVEL",
    }.get(terminal, terminal)
