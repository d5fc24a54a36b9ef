"""``ErrorParser``: one gunicorn error-log record (possibly multi-line) to one event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from logpipe.event import ERROR_LOGGER, Event, Processor
from logpipe.lines import MAX_LINE_BYTES, decode
from logpipe.parsing.attributes import run_chain
from logpipe.parsing.error.builder import error_builds
from logpipe.parsing.error.fast import record_rules
from logpipe.parsing.error.grammar import describe, error_parser, record_layout
from logpipe.parsing.error.json_lines import json_event, json_record
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, ErrorLayout, FormatRecords
from logpipe.parsing.failures import failed_event, flag_repairs, reason
from logpipe.parsing.timestamps import zone_named

END = "\n"


class ErrorRecordParseError(ValueError):
    """A record without a known error-log prefix."""


class ErrorParser:
    """Parse error-log records of a layout (``layout``; by default gunicorn's prefix or the
    Flask/app-logging prefix, ``DEFAULT_LAYOUT``).

    ``timezone``: the zone times without an offset are read in (an IANA name; None: the
    machine's local zone), for layouts other than the default (whose Flask-style times are
    UTC, as Datadog's pipeline reads them).

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
        layout: ErrorLayout | None = None,
        timezone: str | None = None,
    ) -> None:
        self.attributes = dict(attributes or {})
        self.layout = layout or DEFAULT_LAYOUT
        self._json = self.layout.json
        self._zone = zone_named(timezone)
        self._formats: tuple[FormatRecords, ...] = ()
        if self.layout.legacy:
            self._builds = error_builds(self.attributes)
            # (match, event builder) per layout of the fast path: the grammar's record rules
            # as regexes (for parse_text's loop)
            self._fast = tuple(
                (rule.pattern.match, self._builds[rule.name]) for rule in record_rules()
            )
        else:  # assembled from grammars/error_attributes.lark, one builder per format
            self._formats = tuple(
                FormatRecords(text_format, self._zone, self.attributes)
                for text_format in self.layout.formats
            )
            self._fast = tuple((records.match, records.build) for records in self._formats)
        if self._json:  # JSON objects first (the default path pays nothing for the test)
            self.parse_text = self._parse_json_text  # type: ignore[method-assign]
        self.max_record_bytes = max_record_bytes
        self.chain = tuple(chain)

    def parse(self, record: str | bytes, *, truncated: bool = False) -> Event:
        """The event for one record (``truncated``: the aggregator already cut it)."""
        text, repairs = decode(record, max_bytes=self.max_record_bytes, truncated=truncated)
        event = self.parse_text(text)
        if self.chain:
            event = run_chain(event, self.chain)
        return event if repairs is None else flag_repairs(event, repairs)

    def _lark_layout(self, line: str) -> tuple[str, Sequence[str]]:
        """Which record layout ``line`` (a record with END the fast path declined) has and the
        text of each of its terminals, by the Lark parser; ErrorRecordParseError, saying why
        from the record's head, when it has no known prefix."""
        from lark.exceptions import UnexpectedInput

        try:
            tree = error_parser().parse(line if len(line) <= 4096 else line[:4096] + END)
        except UnexpectedInput as error:
            raise ErrorRecordParseError(reason(error, describe, "error record")) from None
        return record_layout(tree)

    def parse_text(self, text: str, bookkeeping: dict[str, Any] | None = None) -> Event:
        """The event for a record already decoded: no NUL byte, within the cap (what ``decode``
        gives; ``parse`` is ``decode`` then this). The processor chain is not run.
        ``bookkeeping``: the event's ``logpipe`` object (where the record is from), if any.

        The fast path answers for the records it matches; the Lark parser takes the rest and
        explains why they fail."""
        line = text + END
        for match, build in self._fast:
            found = match(line)
            if found is not None:
                return build(text, found.groups(), bookkeeping)
        if self._formats:
            return self._explain(text, line, bookkeeping)
        try:
            name, parts = self._lark_layout(line)
        except ErrorRecordParseError as error:
            return failed_event(text, str(error), ERROR_LOGGER, self.attributes, bookkeeping)
        return self._builds[name](text, parts, bookkeeping)

    def _parse_json_text(self, text: str, bookkeeping: dict[str, Any] | None = None) -> Event:
        """``parse_text`` for a layout of JSON lines: a JSON object's event, else the text
        layouts'."""
        if text[:1] == "{":
            record = json_record(text)
            if record is not None:
                return json_event(text, record, self._zone, self.attributes, bookkeeping)
        return ErrorParser.parse_text(self, text, bookkeeping)

    def _explain(self, text: str, line: str, bookkeeping: dict[str, Any] | None) -> Event:
        """A record of an assembled layout that the fast path declined, by the Lark parser of
        each format: the event, or (they all fail) the reason the first gives."""
        from lark.exceptions import UnexpectedInput

        head = line if len(line) <= 4096 else line[:4096] + END
        why = None
        for records in self._formats:
            try:
                parts = records.lark_parts(line if records.rule.rest else head)
            except UnexpectedInput as error:
                why = why or reason(error, records.describe, "error record")
                continue
            except ValueError:
                continue
            return records.build(text, parts, bookkeeping)
        return failed_event(
            text, why or "error record: does not parse", ERROR_LOGGER, self.attributes, bookkeeping
        )
