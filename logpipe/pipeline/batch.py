"""Bytes to events: the one route every command takes.

Lines (``LineBatch``) or error records become events, each stamped with where it came from, and
paired with the offset just past it: what delivering it lets a checkpoint or a ledger cover.
``logpipe parse`` and replay read whole files through it; follow mode hands it what each poll
read from each file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, BinaryIO

from logpipe.event import Event, origin
from logpipe.lines import MAX_LINE_BYTES, LineBatch, clean_text, read_batches
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.parser import ErrorParser
from logpipe.sources.multiline import Multiline, Record

if TYPE_CHECKING:
    from logpipe.pipeline.rules import RuleSet

_first = itemgetter(0)  # the event of a pair (C-level: no Python frame per event)


def access_events(
    stream: BinaryIO,
    parser: AccessParser,
    *,
    path: str | None = None,
    start: int = 0,
    rules: RuleSet | None = None,
) -> Iterator[Event]:
    """One event per non-empty access line of ``stream`` (read from byte ``start``)."""
    batches = read_batches(stream, start=start, max_bytes=parser.max_line_bytes)
    return map(_first, access_batch_pairs(batches, parser, path=path, rules=rules))


def access_batch_pairs(
    batches: Iterable[LineBatch],
    parser: AccessParser,
    *,
    path: str | None = None,
    rules: RuleSet | None = None,
) -> Iterator[tuple[Event, int]]:
    """(event, offset just past its line: what delivering it covers) for each non-empty line
    of ``batches``; with ``rules``, for each line they keep (masked), a kept line's offset
    covering the dropped lines after it."""
    parse, parse_text, parse_ascii = parser.parse, parser.parse_text, parser.parse_ascii
    cap, chain = parser.max_line_bytes, parser.chain
    surely_within_cap = cap // 4  # characters (UTF-8: at most 4 bytes each)
    for batch in batches:
        if rules is not None:  # processing rules (pipeline/rules.py): line by line
            for data, start, end, truncated in rules.lines(batch):
                if isinstance(data, str) and not chain and len(data) <= surely_within_cap:
                    yield parse_text(data, origin(path, start)), end  # decoded, clean
                else:
                    yield add_origin(parse(data, truncated=truncated), path, start), end
            continue
        texts = None if chain else batch.texts()
        if texts is None:  # lines to repair (or a chain to run): one by one
            for line in batch:
                if line.data:
                    event = parse(line.data, truncated=line.truncated)
                    yield add_origin(event, path, line.offset), line.end
            continue
        # In the common batch, all ASCII, a character is a byte, and only a backslash changes
        # which regexes answer for a line (parse_ascii).
        ascii_only = batch.is_ascii()
        parse_line, limit = (parse_ascii, cap) if ascii_only else (parse_text, surely_within_cap)
        offset = batch.offset
        for text in texts:
            end = offset + (len(text) if ascii_only or text.isascii() else len(text.encode())) + 1
            if len(text) > limit:  # (it may pass the cap: parse caps it)
                yield add_origin(parse(text), path, offset), end
            elif text:
                yield parse_line(text, origin(path, offset)), end
            offset = end


def error_events(
    stream: BinaryIO,
    parser: ErrorParser,
    multiline: Multiline[bytes],
    *,
    path: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    start: int = 0,
    rules: RuleSet | None = None,
) -> Iterator[Event]:
    """One event per error-log record of ``stream`` (lines grouped by ``multiline``)."""
    batches = read_batches(stream, start=start, max_bytes=max_line_bytes)
    return map(_first, error_batch_pairs(batches, parser, multiline, path=path, rules=rules))


def error_batch_pairs(
    batches: Iterable[LineBatch],
    parser: ErrorParser,
    multiline: Multiline[bytes],
    *,
    path: str | None = None,
    rules: RuleSet | None = None,
) -> Iterator[tuple[Event, int]]:
    """(event, offset just past its record) for each record of ``batches`` (the last record
    ends with them)."""
    for batch in batches:
        yield from record_pairs(multiline.feed_batch(batch), parser, path=path, rules=rules)
    last = multiline.flush()
    if last is not None:
        yield from record_pairs((last,), parser, path=path, rules=rules)


def record_pairs(
    records: Iterable[Record[bytes]],
    parser: ErrorParser,
    *,
    path: str | None = None,
    rules: RuleSet | None = None,
) -> Iterator[tuple[Event, int]]:
    """(event, offset just past its record) for each of ``records`` (with ``rules``: each
    they keep, masked, its offset covering the dropped records after it)."""
    parse, parse_text, chain = parser.parse, parser.parse_text, parser.chain
    cap = parser.max_record_bytes
    if rules is not None:  # processing rules (pipeline/rules.py)
        records = rules.records(records)
    for data, _, start, end, truncated in records:
        # a record with nothing to repair goes straight to parse_text (a hot loop)
        text = None if chain or truncated else clean_text(data, cap)
        if text is None:
            yield add_origin(parse(data, truncated=truncated), path, start), end
        else:
            yield parse_text(text, origin(path, start)), end


def add_origin(event: Event, path: str | None, offset: int) -> Event:
    """Add ``logpipe.path`` and ``logpipe.offset`` (the byte offset where the line starts)."""
    bookkeeping = origin(path, offset)
    flags = event.get("logpipe")
    event["logpipe"] = bookkeeping if flags is None else {**flags, **bookkeeping}
    return event
