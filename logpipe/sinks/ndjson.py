"""NDJSON output, to stdout or a file: events serialised with orjson and written in large
chunks (``NdjsonWriter``); as a log sink, events are delivered as soon as they are written
(``NdjsonSink``)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from functools import partial
from io import BytesIO
from operator import itemgetter
from typing import Any, BinaryIO

import orjson

from logpipe.event import Event, Token
from logpipe.sinks import nothing_to_sync
from logpipe.sinks.write_behind import write_behind

FLUSH_BYTES = 1 << 20
_first = itemgetter(0)  # the event of an (event, offset) pair (C-level: no frame per event)
_OPTIONS = orjson.OPT_APPEND_NEWLINE


class NdjsonWriter:
    """Serialise events into a buffer and write it to ``stream`` about a megabyte at a time.

    The buffer is one reused ``BytesIO``: each event's bytes are copied in and freed at once,
    which costs less than holding a megabyte of them in a list to join (the allocator keeps
    reusing the same block, still in cache).
    """

    def __init__(self, stream: BinaryIO, *, flush_bytes: int = FLUSH_BYTES) -> None:
        self._stream = stream
        self._flush_bytes = flush_bytes
        self._buffer = BytesIO()
        self._size = 0  # bytes of the buffer in use (it is rewound, never shrunk)
        self.events = 0

    def write_all(self, events: Iterable[dict[str, Any]]) -> None:
        """Write every event (a hot loop)."""
        write, dumps = self._buffer.write, orjson.dumps
        size, count, limit = self._size, 0, self._flush_bytes
        for event in events:
            size += write(dumps(event, option=_OPTIONS))
            count += 1
            if size >= limit:
                self._size = size
                self._spill()
                size = 0
        self._size = size
        self.events += count

    def write_ndjson(self, block: bytes, events: int) -> None:
        """Write ``events`` events already serialised as NDJSON, after those buffered."""
        self._spill()
        self._stream.write(block)
        self.events += events

    def flush(self) -> None:
        self._spill()
        self._stream.flush()

    def _spill(self) -> None:
        if self._size:
            with self._buffer.getbuffer() as view:
                self._stream.write(view[: self._size])
            self._buffer.seek(0)
            self._size = 0


class NdjsonSink:
    """A log sink writing one JSON object per line; a file's ``sync_job`` fsyncs what was
    written, then lets the page cache drop it (``write_behind``)."""

    def __init__(self, stream: BinaryIO, *, fsync: bool, path: str | None = None) -> None:
        self._path = path  # the file written, when there is one
        self._writer = NdjsonWriter(stream)
        self._stream = stream
        # Only a regular file can be synced (not /dev/null, a pipe or a terminal).
        self._fsync = fsync and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        self._synced_to = stream.tell() if self._fsync else 0  # where the last sync job ends
        self._flushed_events = 0  # the writer's event count at the last flush

    @property
    def delivered(self) -> int:
        return self._writer.events

    def send(self, events: Iterable[tuple[Event, int]], key: str, end: int) -> list[Token]:
        """Serialise ``events`` into the buffer, written out by ``tick`` (or at a megabyte):
        one write per loop, not one per batch. They count as delivered now, since a checkpoint
        is only stored after a ``sync_job`` has synced them: one token covers them all."""
        self._writer.write_all(map(_first, events))
        return [(key, end)]

    def send_ndjson(self, block: bytes, tokens: list[Token]) -> list[Token]:
        """Write ``block`` at once: other processes may append to the file next."""
        self._writer.write_ndjson(block, len(tokens))
        self._flush()
        return tokens

    def tick(self) -> list[Token]:
        if self._writer.events != self._flushed_events:
            self._flush()
        return []

    def drain(self) -> list[Token]:
        return []

    def sync_job(self) -> Callable[[], None]:
        """Write out what is buffered (on this thread); the job syncs it, on any thread, while
        writing goes on."""
        self._flush()
        if not self._fsync:
            return nothing_to_sync  # stdout, a pipe, /dev/null
        start, end = self._synced_to, self._stream.tell()
        self._synced_to = end
        return partial(_sync, self._stream.fileno(), start, end)

    def stats(self) -> dict[str, int]:
        return {}

    def parallel_append_path(self) -> str | None:
        """The file written, if there is one: other processes may append to it in turn."""
        return self._path

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        self._writer.flush()
        self._flushed_events = self._writer.events


def _sync(fd: int, start: int, end: int) -> None:
    """Make bytes ``[start, end)`` of ``fd`` durable, then free their pages."""
    os.fsync(fd)
    write_behind(fd, start, end)
