"""Bytes to lines: splitting on ``\\n`` with offsets, caps, CRLF, NUL bytes and invalid UTF-8."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

# Datadog's logs intake takes at most 1 MB per log; longer lines are cut there and flagged.
MAX_LINE_BYTES = 1_000_000
READ_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line as read: its byte range in the file and its bytes (capped, no line ending)."""

    offset: int  # where the line starts
    end: int  # just past its "\n" (or the end of the data for a last line without one)
    data: bytes
    truncated: bool  # the line was longer than the cap; data holds its head


@dataclass(frozen=True, slots=True)
class Text:
    """A line decoded for parsing, with what had to be repaired on the way."""

    text: str
    truncated: bool = False
    invalid_utf8: bool = False
    nul_bytes: bool = False


def split_lines(
    stream: BinaryIO,
    *,
    start: int = 0,
    max_bytes: int = MAX_LINE_BYTES,
    final: bool = True,
    chunk_bytes: int = READ_CHUNK_BYTES,
) -> Iterator[RawLine]:
    """Yield the lines of ``stream`` from byte ``start``, reading in large chunks.

    A line longer than ``max_bytes`` is cut (its head kept, the rest skipped without being held in
    memory). A last line without ``\\n`` is yielded only when ``final`` (the data is complete).
    """
    offset = start
    pending = b""  # head of the line being read (at most max_bytes)
    pending_len = 0  # its true length so far
    while chunk := stream.read(chunk_bytes):
        position = 0
        while (newline := chunk.find(b"\n", position)) >= 0:
            piece = chunk[position:newline]
            length = pending_len + len(piece)
            data = pending + piece[: max(0, max_bytes - len(pending))] if pending else piece
            end = offset + length + 1
            yield _line(offset, end, data, length, max_bytes)
            offset, pending, pending_len, position = end, b"", 0, newline + 1
        rest = chunk[position:]
        if len(pending) < max_bytes:
            pending += rest[: max_bytes - len(pending)]
        pending_len += len(rest)
    if final and pending_len:
        yield _line(offset, offset + pending_len, pending, pending_len, max_bytes)


def _line(offset: int, end: int, data: bytes, length: int, max_bytes: int) -> RawLine:
    truncated = length > max_bytes
    if truncated:
        data = _cut_utf8(data[:max_bytes])
    if data.endswith(b"\r"):
        data = data[:-1]
    return RawLine(offset, end, data, truncated)


def _cut_utf8(data: bytes) -> bytes:
    """Drop a multi-byte character split by a cut at the end of ``data``."""
    back = 0
    while back < 4 and back < len(data) and data[-1 - back] & 0xC0 == 0x80:
        back += 1
    if back < len(data) and data[-1 - back] >= 0xC0:
        needed = 2 if data[-1 - back] < 0xE0 else 3 if data[-1 - back] < 0xF0 else 4
        if back + 1 < needed:
            return data[: len(data) - back - 1]
    return data


def decode(line: bytes | str, *, max_bytes: int = MAX_LINE_BYTES, truncated: bool = False) -> Text:
    """Decode a line (bad UTF-8 replaced), drop its line ending and NUL bytes, cap its size."""
    if isinstance(line, bytes):
        if len(line) > max_bytes:
            line, truncated = _cut_utf8(line[:max_bytes]), True
        try:
            text = line.decode("utf-8")
            invalid = False
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
            invalid = True
    else:
        text, invalid = line, False
        if len(text) > max_bytes // 4 and len(text.encode("utf-8", "replace")) > max_bytes:
            text = text.encode("utf-8", "replace")[:max_bytes].decode("utf-8", "ignore")
            truncated = True
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    nul = "\x00" in text
    if nul:
        text = text.replace("\x00", "")
    return Text(text, truncated, invalid, nul)
