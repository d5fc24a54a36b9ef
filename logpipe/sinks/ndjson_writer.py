"""NDJSON output: events serialised with orjson, written in large chunks."""

from __future__ import annotations

from collections.abc import Iterable
from io import BytesIO
from typing import Any, BinaryIO

import orjson

FLUSH_BYTES = 1 << 20
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
