"""NDJSON output, to stdout or a file: events serialised with orjson and written in large
chunks (``NdjsonWriter``); as a log sink, events are delivered as soon as they are written
(``NdjsonSink``). A file is appended to in whole events only (``AppendFile``): a write that
fails is undone, and what it held stays buffered until a later write succeeds."""

from __future__ import annotations

import os
import stat
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from io import BytesIO
from operator import itemgetter
from typing import Any, Protocol

import orjson

from logpipe.event import Event, Token
from logpipe.sinks import SinkState, nothing_to_sync
from logpipe.sinks.append import AppendFile
from logpipe.sinks.write_behind import write_behind

FLUSH_BYTES = 1 << 20
_first = itemgetter(0)  # the event of an (event, offset) pair (C-level: no frame per event)
_OPTIONS = orjson.OPT_APPEND_NEWLINE


class Stream(Protocol):
    """Where NDJSON goes: a binary stream (stdout) or an ``AppendFile``."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    def flush(self) -> None: ...

    def fileno(self) -> int: ...

    def tell(self) -> int: ...


class NdjsonWriter:
    """Serialise events into a buffer and write it to ``stream`` about a megabyte at a time.

    The buffer is one reused ``BytesIO``: each event's bytes are copied in and freed at once,
    which costs less than holding a megabyte of them in a list to join (the allocator keeps
    reusing the same block, still in cache).
    """

    def __init__(
        self, stream: Stream, *, flush_bytes: int = FLUSH_BYTES, hold: bool = False
    ) -> None:
        self._stream = stream
        self._flush_bytes = flush_bytes
        self._hold = hold  # a failed write keeps what is buffered (else it is raised at once)
        self._buffer = BytesIO()
        self._size = 0  # bytes of the buffer in use (it is rewound, never shrunk)
        self.events = 0

    def write_all(self, events: Iterable[dict[str, Any]]) -> None:
        """Write every event (a hot loop). With ``hold``, a write that fails here keeps them
        all buffered, and ``flush`` raises its error."""
        write, dumps = self._buffer.write, orjson.dumps
        size, count, limit = self._size, 0, self._flush_bytes
        for event in events:
            size += write(dumps(event, option=_OPTIONS))
            count += 1
            if size >= limit:
                self._size = size
                limit = self._spill_or_hold()
                size = self._size
        self._size = size
        self.events += count

    def _spill_or_hold(self) -> int:
        """Spill the buffer; the size at which to try next (with ``hold``, never again in this
        call when the write failed: the rest is held until ``flush``)."""
        try:
            self._spill()
        except OSError:
            if not self._hold:
                raise
            return sys.maxsize
        return self._flush_bytes

    def redirect(self, stream: Stream) -> None:
        """Write to ``stream`` from now on (what was buffered was flushed before)."""
        self._stream = stream

    def write_ndjson(self, block: bytes, events: int) -> None:
        """Write ``events`` events already serialised as NDJSON, after those buffered."""
        self._spill()
        self._stream.write(block)
        self.events += events

    def flush(self) -> None:
        self._spill()
        self._stream.flush()

    def _spill(self) -> None:
        """Write the buffer out; what a failed write held stays buffered, to be written again.
        A buffer that grew while writes failed goes a piece of whole events at a time, so that
        a disk with some room again takes some."""
        if self._size > 2 * self._flush_bytes:
            self._spill_in_pieces()
        elif self._size:
            with self._buffer.getbuffer() as view:
                self._stream.write(view[: self._size])
            self._buffer.seek(0)
            self._size = 0

    def _spill_in_pieces(self) -> None:
        data = self._buffer.getvalue()[: self._size]
        done = 0
        try:
            while done < len(data):
                cut = data.rfind(b"\n", done, done + self._flush_bytes)
                if cut < 0:  # an event longer than a piece
                    cut = data.find(b"\n", done + self._flush_bytes)
                self._stream.write(memoryview(data)[done : cut + 1])
                done = cut + 1
        finally:
            self._buffer.seek(0)
            self._size = self._buffer.write(memoryview(data)[done:])


class NdjsonSink:
    """A log sink writing one JSON object per line; a file's ``sync_job`` fsyncs what was
    written, then lets the page cache drop it (``write_behind``)."""

    def __init__(
        self,
        stream: Stream,
        *,
        fsync: bool,
        path: str | None = None,
        report: Callable[[str], None] = lambda message: None,
        owned: AppendFile | None = None,
    ) -> None:
        self._path = path  # the file written, when there is one
        self._report = report  # told when a file (re)opened had to be cut back
        self._writer = NdjsonWriter(stream, hold=True)
        self._wants_fsync = fsync
        self._owned = owned  # the file this sink opened (closed by ``close`` or ``reopen``)
        self._flushed_events = 0  # the writer's event count at the last flush
        self._written_at: float | None = None  # Unix time of the last flush that wrote events
        self._use(stream)

    @classmethod
    def to_file(cls, path: str, report: Callable[[str], None]) -> NdjsonSink:
        """A sink appending to ``path``, cut back to its last whole line first (``report`` is
        told when it had to be)."""
        file = AppendFile.open(path, report)
        return cls(file, fsync=True, path=path, report=report, owned=file)

    def _use(self, stream: Stream) -> None:
        self._stream = stream
        # Only a regular file can be synced (not /dev/null, a pipe or a terminal).
        self._fsync = self._wants_fsync and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        self._synced_to = stream.tell() if self._fsync else 0  # where the last sync job ends

    @property
    def delivered(self) -> int:
        return self._writer.events

    @property
    def congested(self) -> bool:
        """Writing waits for nothing but the disk (a failed write is an ``Outage``)."""
        return False

    def state(self) -> SinkState:
        return SinkState(
            kind="ndjson" if self._path is not None else "stdout",
            target=self._path or "stdout",
            delivered=self._writer.events,
            refused=0,
            pending=0,
            retries=0,
            last_success=self._written_at,
            last_error=None,
            last_error_at=None,
            failing_since=None,
        )

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
        return partial(_sync, self._stream.fileno(), start, end, self._path or "the output")

    def stats(self) -> dict[str, int]:
        return {}

    def parallel_append_path(self) -> str | None:
        """The file written, if there is one: other processes may append to it in turn."""
        return self._path

    def reopen(self) -> str | None:
        """Write out and sync what was sent, then open the file's path again (logrotate moved
        the file away): the path, or None when the output is not a file (nothing to reopen).
        Call it while no sync job runs."""
        if self._path is None:
            return None
        self._flush()
        if self._fsync:
            _sync(self._stream.fileno(), self._synced_to, self._stream.tell(), self._path)
        file = AppendFile.open(self._path, self._report)
        if self._owned is not None:
            self._owned.close()
        self._owned = file
        self._writer.redirect(file)
        self._use(file)
        return self._path

    def close(self) -> None:
        """Close the file this sink opened. What is still buffered (its write failed) is not
        written: no checkpoint covers it, so it is read again after a restart."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def _flush(self) -> None:
        self._writer.flush()
        if self._flushed_events != self._writer.events:
            self._written_at = time.time()
        self._flushed_events = self._writer.events


def _sync(fd: int, start: int, end: int, path: str) -> None:
    """Make bytes ``[start, end)`` of ``fd`` (the file ``path``) durable, then free their
    pages."""
    try:
        os.fsync(fd)
    except OSError as error:
        raise OSError(error.errno, error.strerror, path) from None
    write_behind(fd, start, end)
