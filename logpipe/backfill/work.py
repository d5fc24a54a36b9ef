"""One chunk of a replay, parsed wherever the work runs (this process, a worker process or a
Dask worker): complete lines in, NDJSON out, with what the summary and the metrics counted.

Everything here crosses a process boundary, so it is plain data: the settings and the lines go
out, a ``ChunkResult`` comes back. Parsers are built once per process and kept (``_access_parser``,
``_error_parser``).

When the sink offers parallel appends (an NDJSON file), worker processes write its file
themselves, each chunk in its turn (``logpipe.sinks.parallel_append``), so that the events do
not travel back to the main process.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

import orjson

from logpipe.backfill.archives import open_raw
from logpipe.backfill.summary import Summary
from logpipe.event import Event
from logpipe.lines import LineBatch, read_batches
from logpipe.metrics.derive import EventMetrics
from logpipe.metrics.timestamped import BucketedCounts
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, ErrorLayout
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import access_batch_pairs, error_batch_pairs
from logpipe.pipeline.rules import Rules
from logpipe.sinks.parallel_append import append_in_turn
from logpipe.sources.multiline import Multiline

if TYPE_CHECKING:
    from datadog.dogstatsd.base import DogStatsd

_LINE = orjson.OPT_APPEND_NEWLINE


@dataclass(frozen=True)
class ReplaySettings:
    """How every chunk of a replay is parsed and what is counted."""

    access_format: str | None
    multiline_pattern: str
    max_line_bytes: int
    attributes: dict[str, str]  # added to every event (service, hostname, ddtags)
    oldest_ms: int | None  # events older than this are counted but not sent
    summarize: bool  # count for the summary
    count_metrics: bool  # count the derived metrics, at the events' own times
    error_layout: ErrorLayout | None = None  # the layout of every error log (None: detected)
    timezone: str | None = None  # of error-log times written without an offset
    rules: Rules | None = None  # processing rules (pickled as their specs)


@dataclass
class Chunk:
    """Part of one file: complete lines (for an error log, whole records), either read already
    (``batches``) or the bytes [``start``, ``stop``) of the file, read where the work runs (the
    main process put both ends at line or record starts: ``next_start``)."""

    kind: str  # "access" or "error"
    path: str
    batches: list[LineBatch] | None = None
    start: int = 0
    stop: int = 0
    turn: int = -1  # its place in the output file when workers write it, else -1
    formats: tuple[str, ...] | None = None  # its file's access formats, when detected
    layout: ErrorLayout | None = None  # its file's error-log layout, when detected

    @property
    def end(self) -> int:
        """Just past the chunk's last line."""
        return self.batches[-1].end if self.batches else self.stop


@dataclass
class ChunkResult:
    """A parsed chunk: the events to send, as NDJSON, and the offsets they cover."""

    encoded: bytes  # one JSON object per line
    ends: array[int]  # per line of ``encoded``: the file offset its delivery covers
    events: int  # events parsed, sent or not
    too_old: int  # events older than ``oldest_ms``, not in ``encoded``
    summary: Summary | None
    counts: BucketedCounts | None
    turn: int = -1  # the chunk's turn in the output file, if it has one
    written: bool = False  # ``encoded`` is already in the output file (and left out here)
    excluded: int = 0  # lines or records the processing rules dropped
    masked: int = 0  # lines or records they masked


def parse_chunk(settings: ReplaySettings, chunk: Chunk) -> ChunkResult:
    """Parse, enrich, count and serialise one chunk; in a writing worker, also write it if its
    turn has come.

    The last line's offset is the chunk's end, so delivering it also covers the chunk's empty
    lines and too-old events after it.
    """
    result = _parse_chunk(settings, chunk)
    result.turn = chunk.turn
    if chunk.turn >= 0 and append_in_turn(chunk.turn, result.encoded):
        result.encoded, result.written = b"", True
    return result


def _parse_chunk(settings: ReplaySettings, chunk: Chunk) -> ChunkResult:
    summary = Summary() if settings.summarize else None
    counts = BucketedCounts() if settings.count_metrics else None
    metrics = EventMetrics(cast("DogStatsd", counts)) if counts is not None else None
    oldest = settings.oldest_ms
    lines: list[bytes] = []
    ends: array[int] = array("q")
    events = too_old = 0
    rules = settings.rules.counts if settings.rules is not None else None
    excluded, masked = (rules.excluded, rules.masked) if rules is not None else (0, 0)
    with _lines(settings, chunk) as batches:
        for event, end in _pairs(settings, chunk, batches):
            events += 1
            if summary is not None:
                summary.observe(event)
            timestamp = event.get("timestamp")
            if metrics is not None and counts is not None:
                counts.at = (timestamp or 0) / 1000
                metrics.observe(event)
            if oldest is not None and timestamp is not None and timestamp < oldest:
                too_old += 1
                continue
            lines.append(orjson.dumps(event, option=_LINE))
            ends.append(end)
        if ends:
            ends[-1] = batches.end
    result = ChunkResult(b"".join(lines), ends, events, too_old, summary, counts)
    if rules is not None:
        result.excluded, result.masked = rules.excluded - excluded, rules.masked - masked
    return result


def _pairs(
    settings: ReplaySettings,
    chunk: Chunk,
    batches: Iterable[LineBatch],
) -> Iterator[tuple[Event, int]]:
    attributes = tuple(settings.attributes.items())
    rules = settings.rules.for_input(chunk.kind, chunk.path) if settings.rules else None
    if chunk.kind == "access":
        fixed = (settings.access_format,) if settings.access_format is not None else None
        access = _access_parser(chunk.formats or fixed, settings.max_line_bytes, attributes)
        return access_batch_pairs(batches, access, path=chunk.path, rules=rules)
    layout = settings.error_layout or chunk.layout or DEFAULT_LAYOUT
    errors = _error_parser(layout, settings.timezone, settings.max_line_bytes, attributes)
    pattern = layout.record_start(settings.multiline_pattern)
    multiline = Multiline[bytes](pattern, max_bytes=settings.max_line_bytes)
    return error_batch_pairs(batches, errors, multiline, path=chunk.path, rules=rules)


class _Lines:
    """Line batches, walked once; ``end``: just past the last line walked."""

    def __init__(self, batches: Iterable[LineBatch], begin: int) -> None:
        self.end = begin
        self._batches = batches

    def __iter__(self) -> Iterator[LineBatch]:
        for batch in self._batches:
            self.end = batch.end
            yield batch


@contextmanager
def _lines(settings: ReplaySettings, chunk: Chunk) -> Iterator[_Lines]:
    """The chunk's lines: as given, or read from its file here."""
    if chunk.batches is not None:
        yield _Lines(chunk.batches, chunk.start)
        return
    with open_raw(chunk.path) as stream:
        stream.seek(chunk.start)
        window = _Window(stream, chunk.stop - chunk.start)
        batches = read_batches(window, start=chunk.start, max_bytes=settings.max_line_bytes)
        yield _Lines(batches, chunk.start)


class _Window:
    """At most ``size`` bytes of ``stream``, from where it stands."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self._stream = stream
        self._left = size

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._stream.read(size) if size else b""
        self._left -= len(data)
        return data


@functools.cache
def _access_parser(
    formats: tuple[str, ...] | None, max_line_bytes: int, attributes: tuple[tuple[str, str], ...]
) -> AccessParser:
    """This process's parser for formats (built once: grammar assembly is not free)."""
    return AccessParser(formats, max_line_bytes=max_line_bytes, attributes=dict(attributes))


@functools.cache
def _error_parser(
    layout: ErrorLayout,
    timezone: str | None,
    max_line_bytes: int,
    attributes: tuple[tuple[str, str], ...],
) -> ErrorParser:
    """This process's parser for an error-log layout (built once)."""
    return ErrorParser(
        max_record_bytes=max_line_bytes,
        attributes=dict(attributes),
        layout=layout,
        timezone=timezone,
    )
