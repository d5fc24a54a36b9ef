"""``ErrorParser``: one gunicorn error-log record (possibly multi-line) to one event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from logpipe.event import ERROR_LOGGER, Event, Processor
from logpipe.lines import MAX_LINE_BYTES, decode
from logpipe.parsing.attributes import run_chain
from logpipe.parsing.error.builder import error_builds
from logpipe.parsing.error.fast import record_rules
from logpipe.parsing.error.trees import branch_tokens
from logpipe.parsing.failures import failed_event, flag_repairs, reason
from logpipe.parsing.grammars import grammar_text

if TYPE_CHECKING:
    from lark import Lark

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
    the record's attributes of the same name (not ``logpipe``: that is logpipe's bookkeeping).
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
        self._builds = error_builds(self.attributes)
        # (match, event builder) per layout, for parse_text's loop
        self._fast = tuple((rule.pattern.match, self._builds[rule.name]) for rule in self._rules)
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

    def parse_text(self, text: str, logpipe: dict[str, Any] | None = None) -> Event:
        """The event for a record already decoded: no NUL byte, within the cap (what ``decode``
        gives; ``parse`` is ``decode`` then this). The processor chain is not run. ``logpipe``:
        the event's bookkeeping (where the record is from), if any."""
        line = text + END
        for match, build in self._fast:  # (``layout``'s fast path, unrolled here: the hot loop)
            found = match(line)
            if found is not None:
                return build(text, found.groups(), logpipe)
        try:
            name, parts = self._lark_layout(line)
        except ErrorRecordParseError as error:
            return failed_event(text, str(error), ERROR_LOGGER, self.attributes, logpipe)
        return self._builds[name](text, parts, logpipe)


def _describe(terminal: str) -> str:
    return {
        "GUNICORN_TIME": "[YYYY-MM-DD HH:MM:SS +ZZZZ]",
        "APP_TIME": "[YYYY-MM-DD HH:MM:SS,mmm]",
        "PROCESS": "[pid]",
        "LEVEL": "[LEVEL]",
        "APP_LEVEL": "LEVEL",
    }.get(terminal, terminal)
