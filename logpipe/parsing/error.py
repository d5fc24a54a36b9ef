"""``ErrorParser``: one gunicorn error-log record (possibly multi-line) to one event."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from lark import Lark
from lark.exceptions import UnexpectedInput

from logpipe.enrich import STATUSES, Event, Processor, run_chain
from logpipe.lines import MAX_LINE_BYTES, decode
from logpipe.parsing.failures import failed_event, flag_repairs, reason
from logpipe.parsing.fast_error import record_rules
from logpipe.parsing.grammar_files import grammar_text
from logpipe.parsing.traceback import split_traceback
from logpipe.parsing.trees import branch_tokens
from logpipe.timestamps import ERROR_TIMES, app_time_ms

ERROR_LOGGER = "gunicorn.error"
END = "\n"


class ErrorRecordParseError(ValueError):
    """A record without a known error-log prefix."""


@cache
def error_parser() -> Lark:
    """LALR parser for grammars/error_record.lark."""
    return Lark(grammar_text("error_record"), parser="lalr", lexer="contextual")


class ErrorParser:
    """Parse error-log records: gunicorn's prefix or the Flask/app-logging prefix.

    ``parse`` never raises: a record without a known prefix (a stray line written to the error log
    by ``wsgi.errors`` or ``--capture-output``) becomes an event with ``logpipe.parse_error``.
    """

    def __init__(
        self,
        *,
        max_record_bytes: int = MAX_LINE_BYTES,
        chain: Sequence[Processor] = (),
    ) -> None:
        self._lark = error_parser()
        self._rules = record_rules(self._lark)
        self.max_record_bytes = max_record_bytes
        self.chain = tuple(chain)

    def parse(self, record: str | bytes, *, truncated: bool = False) -> Event:
        """The event for one record (``truncated``: the aggregator already cut it)."""
        text, repairs = decode(record, max_bytes=self.max_record_bytes, truncated=truncated)
        event = run_chain(self._event(text), self.chain)
        return event if repairs is None else flag_repairs(event, repairs)

    def tokens(self, text: str) -> dict[str, str]:
        """The record's text by terminal name (ErrorRecordParseError if it has no known prefix).

        The fast path (the grammar's record rules as regexes) answers for the records it
        matches; the Lark parser takes the rest and explains why they fail.
        """
        line = text + END
        for rule in self._rules:
            found = rule.pattern.match(line)
            if found is not None:
                return dict(zip(rule.terminals, found.groups(), strict=True))
        try:
            tree = self._lark.parse(line)
        except UnexpectedInput as error:
            raise ErrorRecordParseError(reason(error, _describe, "error record")) from None
        return {token.type: str(token) for token in branch_tokens(tree)}

    def fields(self, text: str) -> dict[str, Any]:
        """Timestamp, level, pid and body of a record (ErrorRecordParseError if none)."""
        tokens = self.tokens(text)
        body = tokens["MESSAGE"][:-1]
        if "GUNICORN_TIME" in tokens:
            return {
                "timestamp": ERROR_TIMES[tokens["GUNICORN_TIME"]],
                "pid": int(tokens["PROCESS"][1:-2]),
                "level": tokens["LEVEL"][1:-2],
                "body": body,
            }
        stamp = tokens["APP_TIME"]
        return {
            "timestamp": app_time_ms(stamp[1:20], stamp[21:24]),
            "level": tokens["APP_LEVEL"][:-1],
            "body": body,
        }

    def _event(self, text: str) -> Event:
        try:
            fields = self.fields(text)
        except ErrorRecordParseError as error:
            return failed_event(text, str(error), ERROR_LOGGER)
        event: Event = {
            "message": text,
            "ddsource": "gunicorn",
            "logger": {"name": ERROR_LOGGER},
            "level": fields["level"],
            "status": STATUSES[fields["level"]],
        }
        if fields["timestamp"] is not None:
            event["timestamp"] = fields["timestamp"]
        if "pid" in fields:
            event["pid"] = fields["pid"]
        traceback = split_traceback(fields["body"])
        if traceback:
            event["error"] = traceback
        return event


def _describe(terminal: str) -> str:
    return {
        "GUNICORN_TIME": "[YYYY-MM-DD HH:MM:SS +ZZZZ]",
        "APP_TIME": "[YYYY-MM-DD HH:MM:SS,mmm]",
        "PROCESS": "[pid]",
        "LEVEL": "[LEVEL]",
        "APP_LEVEL": "LEVEL",
    }.get(terminal, terminal)
