"""Bytes to lines: splitting on ``\\n`` with offsets, caps, CRLF, NUL bytes and invalid UTF-8."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple, Protocol

# Datadog's logs intake takes at most 1 MB per log; longer lines are cut there and flagged.
MAX_LINE_BYTES = 1_000_000
# 256 KiB: batches decoded whole at 1 MiB left the heap fragmented (RSS 33 -> 55 MB).
READ_CHUNK_BYTES = 1 << 18


class RawLine(NamedTuple):
    """One line as read: its byte range in the file and its bytes (capped, no line ending)."""

    offset: int  # where the line starts
    end: int  # just past its "\n" (or the end of the data for a last line without one)
    data: bytes
    truncated: bool  # the line was longer than the cap; data holds its head


class Repairs(NamedTuple):
    """What decoding a line had to change (see ``decode``)."""

    truncated: bool
    invalid_utf8: bool
    nul_bytes: bool


class LineBatch:
    """The complete lines found in one read: hot loops walk ``lines`` (or ``texts()``) and add
    up offsets.

    A batch holds its lines as a list, or as the block of bytes they were read from (the lines
    joined by ``\n``), or both: each form is made from the other when first asked for, so a
    reader that decodes the block at once never splits it into bytes lines.
    """

    __slots__ = ("_block", "_lines", "cut", "end", "offset")

    def __init__(
        self,
        offset: int,
        end: int,
        lines: list[bytes] | None,
        cut: dict[int, int],
        block: bytes | None = None,
    ) -> None:
        if lines is None and block is None:
            raise ValueError("a LineBatch needs its lines or their block")
        self.offset = offset  # where lines[0] starts
        self.end = end  # just past the last line
        self.cut = cut  # index -> true length, for the lines longer than the cap
        self._lines = lines
        self._block = block if not cut else None  # a block is what was read: nothing cut

    @property
    def lines(self) -> list[bytes]:
        """Without ``\n`` (a ``\r`` before it is kept); a cut line holds its head."""
        if self._lines is None:
            assert self._block is not None
            self._lines = self._block.split(b"\n")
        return self._lines

    def __len__(self) -> int:
        if self._lines is None:
            assert self._block is not None
            return self._block.count(b"\n") + 1
        return len(self._lines)

    def joined(self) -> bytes:
        """The lines joined by ``\n`` (the bytes they were read from, unless a line was cut)."""
        if self._block is None:
            return b"\n".join(self.lines)
        return self._block

    def __reduce__(self) -> tuple[type[LineBatch], tuple[object, ...]]:
        """Pickled (to worker processes) in one form only, the block if there is one."""
        lines = self._lines if self._block is None else None
        return LineBatch, (self.offset, self.end, lines, self.cut, self._block)

    def texts(self) -> list[str] | None:
        """The lines decoded at once, when none needs repair (no invalid UTF-8, NUL byte, CR or
        cut line); otherwise None, and each line goes through ``decode``. Decoding a batch in
        one call costs a fifth of decoding its lines one by one."""
        if self.cut:
            return None
        block = self.joined()
        if b"\x00" in block or b"\r" in block:
            return None
        try:
            return block.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return None

    def is_ascii(self) -> bool:
        """Every line is ASCII (one scan of the block)."""
        return self.joined().isascii()

    def __iter__(self) -> Iterator[RawLine]:
        offset = self.offset
        for index, data in enumerate(self.lines):
            length = self.cut.get(index, len(data))
            end = min(offset + length + 1, self.end)
            yield RawLine(
                offset, end, data[:-1] if data.endswith(b"\r") else data, index in self.cut
            )
            offset = end

    def split(self, index: int) -> tuple[LineBatch, LineBatch]:
        """The lines before ``index`` and the lines from it, as two batches (0 < index < len)."""
        cut = self.cut
        size = sum(cut.get(i, len(data)) + 1 for i, data in enumerate(self.lines[:index]))
        head = LineBatch(
            self.offset,
            self.offset + size,
            self.lines[:index],
            {i: length for i, length in cut.items() if i < index},
        )
        tail = LineBatch(
            self.offset + size,
            self.end,
            self.lines[index:],
            {i - index: length for i, length in cut.items() if i >= index},
        )
        return head, tail


class Readable(Protocol):
    """What ``read_batches`` reads from: a binary file, or anything with its ``read``."""

    def read(self, size: int = -1, /) -> bytes: ...


class Unterminated:
    """The line a read ended inside (``final=False``): its first ``max_bytes`` bytes and its
    length so far, kept so that the next read goes on after it instead of reading it again."""

    __slots__ = ("head", "length")

    def __init__(self) -> None:
        self.head = b""
        self.length = 0


class Prefixed:
    """``stream`` with ``head`` (bytes already read from it) put back in front."""

    def __init__(self, head: bytes, stream: Readable) -> None:
        self._head = head
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._stream.read(size)
        if size < 0:
            data, self._head = self._head + self._stream.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        return data


def head_lines(head: bytes) -> list[str]:
    """The complete lines of the first bytes of a file, decoded (for a look at its layout)."""
    complete = head[: head.rfind(b"\n") + 1]
    return complete.decode("utf-8", "replace").splitlines()


def read_batches(
    stream: Readable,
    *,
    start: int = 0,
    max_bytes: int = MAX_LINE_BYTES,
    final: bool = True,
    chunk_bytes: int = READ_CHUNK_BYTES,
    unterminated: Unterminated | None = None,
) -> Iterator[LineBatch]:
    """The lines of ``stream`` from byte ``start``, a chunk's worth at a time.

    A line longer than ``max_bytes`` is cut at a character boundary (its head kept, the rest
    skipped without being held in memory). A last line without ``\n`` is yielded only when
    ``final`` (the data is complete). With ``unterminated``, the line at ``start`` begins with
    what it holds (``stream`` is then at ``start + unterminated.length``), and once the stream
    is read to its end it holds the line the stream ends inside.
    """
    offset = start
    head = b""  # the start of a line that goes on in the next chunk (at most max_bytes)
    head_length = 0  # that line's true length so far
    if unterminated is not None:
        head, head_length = unterminated.head, unterminated.length
    while chunk := stream.read(chunk_bytes):
        last = chunk.rfind(b"\n")
        if last >= 0 and head_length == len(head) and head_length + last <= max_bytes:
            # No line here can pass the cap: the batch is the block, split only if asked.
            block = head + chunk[:last]
            yield LineBatch(offset, offset + len(block) + 1, None, {}, block)
            offset += len(block) + 1
            head, head_length = chunk[last + 1 :][:max_bytes], len(chunk) - last - 1
            continue
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if lines:
            cut: dict[int, int] = {}
            if head_length:
                length = head_length + len(lines[0])
                lines[0] = head + lines[0][: max(0, max_bytes - len(head))]
                if length > max_bytes:
                    cut[0] = length
                head, head_length = b"", 0
            if max(map(len, lines)) > max_bytes or cut:
                _cap(lines, cut, max_bytes)
            size = sum(map(len, lines)) + sum(cut.values()) - sum(len(lines[i]) for i in cut)
            end = offset + size + len(lines)
            yield LineBatch(offset, end, lines, cut)
            offset = end
        if len(head) < max_bytes:
            head += rest[: max_bytes - len(head)]
        head_length += len(rest)
    if unterminated is not None:
        unterminated.head, unterminated.length = head, head_length
    if final and head_length:
        cut = {0: head_length} if head_length > max_bytes else {}
        lines = [_cut_utf8(head) if cut else head]
        yield LineBatch(offset, offset + head_length, lines, cut)


def split_lines(stream: BinaryIO, **options: Any) -> Iterator[RawLine]:
    """The lines of ``stream`` one by one (``read_batches`` options); ``\r\n`` endings dropped."""
    for batch in read_batches(stream, **options):
        yield from batch


def _cap(lines: list[bytes], cut: dict[int, int], max_bytes: int) -> None:
    """Cut the lines longer than ``max_bytes``, recording their true length in ``cut``."""
    for index, data in enumerate(lines):
        if len(data) > max_bytes:
            cut.setdefault(index, len(data))
            lines[index] = _cut_utf8(data[:max_bytes])
        elif index in cut:
            lines[index] = _cut_utf8(data)


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


def decode(
    line: bytes | str, *, max_bytes: int = MAX_LINE_BYTES, truncated: bool = False
) -> tuple[str, Repairs | None]:
    """Decode a line (bad UTF-8 replaced), drop its line ending and NUL bytes, cap its size.

    Returns the text and what was repaired (None for a clean line, the common case).
    """
    if type(line) is bytes and not truncated:
        text = clean_text(line, max_bytes)
        if text is not None:
            return text, None
    return _repair(line, max_bytes, truncated)


def clean_text(data: bytes, max_bytes: int = MAX_LINE_BYTES) -> str | None:
    """``data`` decoded when ``decode`` has nothing to repair (valid UTF-8 within ``max_bytes``,
    no NUL byte, no line ending at its end: the common case), else None."""
    if len(data) > max_bytes:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if "\x00" not in text and text[-1:] not in ("\r", "\n") else None


def _repair(line: bytes | str, max_bytes: int, truncated: bool) -> tuple[str, Repairs | None]:
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
    return text, (Repairs(truncated, invalid, nul) if truncated or invalid or nul else None)
