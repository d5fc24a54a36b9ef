"""NDJSON output: events serialised with orjson, written in large chunks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, BinaryIO

import orjson

FLUSH_BYTES = 1 << 20
_OPTIONS = orjson.OPT_APPEND_NEWLINE


class NdjsonWriter:
    """Buffer serialised events and write them to ``stream`` about a megabyte at a time."""

    def __init__(self, stream: BinaryIO, *, flush_bytes: int = FLUSH_BYTES) -> None:
        self._stream = stream
        self._flush_bytes = flush_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self.events = 0

    def write_all(
        self, events: Iterable[dict[str, Any]], *, extra: dict[str, Any] | None = None
    ) -> None:
        """Write every event, each with the attributes of ``extra`` added (a hot loop)."""
        chunks, append = self._chunks, self._chunks.append
        size, count, limit = self._size, 0, self._flush_bytes
        for event in events:
            if extra:
                event.update(extra)
            line = orjson.dumps(event, option=_OPTIONS)
            append(line)
            size += len(line)
            count += 1
            if size >= limit:
                self._stream.write(b"".join(chunks))
                chunks.clear()
                size = 0
        self._size = size
        self.events += count

    def write_ndjson(self, block: bytes, events: int) -> None:
        """Write ``events`` events already serialised as NDJSON, after those buffered."""
        if self._chunks:
            self._stream.write(b"".join(self._chunks))
            self._chunks.clear()
            self._size = 0
        self._stream.write(block)
        self.events += events

    def flush(self) -> None:
        if self._chunks:
            self._stream.write(b"".join(self._chunks))
            self._chunks.clear()
            self._size = 0
        self._stream.flush()
