"""NDJSON output: events serialised with orjson, written in large chunks."""

from __future__ import annotations

from typing import Any, BinaryIO

import orjson

FLUSH_BYTES = 1 << 20
_OPTIONS = orjson.OPT_APPEND_NEWLINE


def dumps(event: dict[str, Any]) -> bytes:
    """One event as one JSON line (newline included)."""
    return orjson.dumps(event, option=_OPTIONS)


class NdjsonWriter:
    """Buffer serialised events and write them to ``stream`` about a megabyte at a time."""

    def __init__(self, stream: BinaryIO, *, flush_bytes: int = FLUSH_BYTES) -> None:
        self._stream = stream
        self._flush_bytes = flush_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self.events = 0

    def write(self, event: dict[str, Any]) -> None:
        line = dumps(event)
        self._chunks.append(line)
        self._size += len(line)
        self.events += 1
        if self._size >= self._flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self._chunks:
            self._stream.write(b"".join(self._chunks))
            self._chunks.clear()
            self._size = 0
        self._stream.flush()
