"""Events of a complete file or stream, in order, each stamped with where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from logpipe.enrich import Event
from logpipe.lines import MAX_LINE_BYTES, read_batches
from logpipe.multiline import Multiline
from logpipe.parsing.access import AccessParser
from logpipe.parsing.error import ErrorParser


def access_events(
    stream: BinaryIO, parser: AccessParser, *, path: str | None = None
) -> Iterator[Event]:
    """One event per non-empty access line of ``stream``."""
    parse = parser.parse
    for batch in read_batches(stream, max_bytes=parser.max_line_bytes):
        offset, cut = batch.offset, batch.cut
        if cut:
            for line in batch:
                if line.data:
                    yield stamp(parse(line.data, truncated=line.truncated), path, line.offset)
            continue
        for data in batch.lines:
            if data and data != b"\r":
                yield stamp(parse(data), path, offset)
            offset += len(data) + 1


def error_events(
    stream: BinaryIO,
    parser: ErrorParser,
    multiline: Multiline[bytes],
    *,
    path: str | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Event]:
    """One event per error-log record of ``stream`` (lines grouped by ``multiline``)."""
    parse = parser.parse
    for batch in read_batches(stream, max_bytes=max_line_bytes):
        for record in multiline.feed_batch(batch):
            yield stamp(parse(record.text, truncated=record.truncated), path, record.start)
    last = multiline.flush()
    if last is not None:
        yield stamp(parse(last.text, truncated=last.truncated), path, last.start)


def stamp(event: Event, path: str | None, offset: int) -> Event:
    """Add ``logpipe.path`` and ``logpipe.offset`` (the byte offset where the line starts)."""
    bookkeeping = {"path": path, "offset": offset} if path is not None else {"offset": offset}
    flags = event.get("logpipe")
    event["logpipe"] = bookkeeping if flags is None else {**flags, **bookkeeping}
    return event
