"""NDJSON to stdout or a file: events are delivered as soon as they are written."""

from __future__ import annotations

import os
import stat
from typing import Any, BinaryIO

from logpipe.event import Token
from logpipe.sinks.ndjson_writer import NdjsonWriter
from logpipe.sinks.write_behind import write_behind


class NdjsonSink:
    """A log sink writing one JSON object per line; ``make_durable`` fsyncs a file, whose
    writes are also handed to the disk as they are made (``write_behind``), so that the fsync
    finds little left to write."""

    def __init__(self, stream: BinaryIO, *, fsync: bool, path: str | None = None) -> None:
        self.path = path  # the file written, when there is one (others may append to it too)
        self._writer = NdjsonWriter(stream)
        self._stream = stream
        # Only a regular file can be synced (not /dev/null, a pipe or a terminal).
        self._fsync = fsync and stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        self._written_to = stream.tell() if self._fsync else 0  # where write-behind got to

    def send(self, events: list[tuple[dict[str, Any], Token]]) -> list[Token]:
        self._writer.write_all(event for event, _ in events)
        self._flush()
        return [token for _, token in events]

    def send_ndjson(self, block: bytes, tokens: list[Token]) -> list[Token]:
        self._writer.write_ndjson(block, len(tokens))
        self._flush()
        return tokens

    def tick(self) -> list[Token]:
        return []

    def drain(self) -> list[Token]:
        return []

    def make_durable(self) -> None:
        self._flush()
        if self._fsync:
            os.fsync(self._stream.fileno())

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        self._writer.flush()
        if self._fsync:
            end = self._stream.tell()
            write_behind(self._stream.fileno(), self._written_to, end)
            self._written_to = end
