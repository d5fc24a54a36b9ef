"""Multi-line aggregation: group error-log lines into records on a start pattern.

A pure component, with no I/O, threads or clock of its own: ``feed`` takes lines (and the time
they arrived, if the caller wants quiet-period flushing), ``expire(now)`` flushes a record that
has been quiet for ``timeout`` seconds, and ``flush`` hands over whatever is pending.
Every line ends up in exactly one record, in order; a record that would pass ``max_lines`` or
``max_bytes`` is emitted flagged ``truncated`` and the rest goes on in a new, also flagged, one.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import AnyStr, Generic, NamedTuple

from logpipe.lines import MAX_LINE_BYTES, LineBatch

DEFAULT_START = r"\[\d{4}-\d{2}-\d{2}"  # Datadog's log_start_with_date rule, anchored
DEFAULT_MAX_LINES = 1000
DEFAULT_TIMEOUT = 1.0


class Record(NamedTuple, Generic[AnyStr]):
    """Consecutive lines that form one record."""

    text: AnyStr  # the lines joined with "\n"
    line_count: int
    start: int  # offset of the first line (as given to feed)
    end: int  # end offset of the last line
    truncated: bool = False  # cut by a cap, continuing a cut record, or holding a cut line


class Multiline(Generic[AnyStr]):
    """Aggregate lines into records that begin with a line matching ``start_pattern``.

    Lines may be ``str`` or ``bytes`` (one kind per aggregator); records are of the same kind.
    ``feed_batch`` takes a whole ``LineBatch`` of bytes lines at once, with the same result.
    """

    def __init__(
        self,
        start_pattern: str = DEFAULT_START,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        max_bytes: int = MAX_LINE_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        # ASCII semantics for str lines too, so both kinds of line split the same way.
        self._start_text = re.compile(start_pattern, re.ASCII)
        # Record starts in a block of lines: candidates just after a "\n" (a literal first
        # character lets the regex engine skip to each one instead of trying every position),
        # each then checked against its own line (MULTILINE so that `^` holds at a line start;
        # on a single line, as is_start gives it, MULTILINE changes nothing).
        self._start_line = re.compile(start_pattern.encode("utf-8"), re.MULTILINE)
        self._after_newline: re.Pattern[bytes] | None = (
            None
            if re.search(r"\\[Zz]", start_pattern)  # anchored at the end of the text: per line only
            else re.compile(b"\n(?=" + start_pattern.encode("utf-8") + b")", re.MULTILINE)
        )
        self._check_candidates = not stays_on_one_line(start_pattern)
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._pieces: list[AnyStr] = []  # the pending record: lines, or runs of lines joined by \n
        self._lines = 0
        self._bytes = 0
        self._first = 0
        self._last = 0
        self._cut = False  # the pending record continues one that was cut, or holds a cut line
        self._touched = 0.0

    @property
    def pending(self) -> bool:
        """Whether lines are held waiting for the rest of their record."""
        return bool(self._pieces)

    def is_start(self, line: AnyStr) -> bool:
        """Whether ``line`` begins a record."""
        start = self._start_line if isinstance(line, bytes) else self._start_text
        return start.match(line) is not None

    def feed(
        self,
        line: AnyStr,
        *,
        now: float = 0.0,
        start: int = 0,
        end: int = 0,
        truncated: bool = False,
    ) -> list[Record[AnyStr]]:
        """Add one line (no line ending); return the records it completes (zero or one).

        ``truncated``: the reader cut this line; its record is flagged.
        """
        done: list[Record[AnyStr]] = []
        size = len(line.encode("utf-8", "replace")) if isinstance(line, str) else len(line)
        if self._pieces:
            if self.is_start(line):
                done.append(self._take(truncated=self._cut))
            elif self._lines >= self.max_lines or self._bytes + 1 + size > self.max_bytes:
                done.append(self._take(truncated=True))
                self._cut = True
        self._hold(line, 1, size, start, end, now)
        self._cut = self._cut or truncated
        return done

    def feed_batch(
        self: Multiline[bytes], batch: LineBatch, *, now: float = 0.0
    ) -> list[Record[bytes]]:
        """Add every line of ``batch``; the records they complete, as ``feed`` line by line gives.

        Records are found with one regex pass over the batch and appended a run of lines at a
        time, not with a call per line.
        """
        data: bytes = batch.joined()
        after_newline = self._after_newline
        if after_newline is None or batch.cut or b"\r" in data:
            return [
                record
                for line in batch
                for record in self.feed(
                    line.data, now=now, start=line.offset, end=line.end, truncated=line.truncated
                )
            ]
        verify, size = self._start_line.match, len(data)
        candidates = [0] + [found.end() for found in after_newline.finditer(data)]
        if self._check_candidates:
            starts = [
                start
                for start in candidates
                # check the candidate on its own line: from it to its "\n" (or the end, -1)
                if verify(data, start, data.find(b"\n", start) % (size + 1))
            ]
        else:  # every match after a "\n" is a start; the first line is checked on its own
            first = verify(data, 0, data.find(b"\n") % (size + 1))
            starts = candidates if first else candidates[1:]
        done: list[Record[bytes]] = []
        base = batch.offset
        if not starts:  # the whole batch goes on with the pending record
            self._add_run(data, base, batch.end, now, done)
            return done
        if starts[0] > 0:  # the batch begins inside the pending record
            self._add_run(data[: starts[0] - 1], base, base + starts[0], now, done)
        if self._pieces:
            done.append(self._take(truncated=self._cut))
        new, max_lines, max_bytes = tuple.__new__, self.max_lines, self.max_bytes
        for begin, after in pairwise(starts):  # whole records
            run = data[begin : after - 1]
            lines = run.count(b"\n") + 1
            if lines <= max_lines and len(run) <= max_bytes:
                # within caps (the tuple made directly: Record() and _make run Python code)
                done.append(new(Record, (run, lines, base + begin, base + after, False)))
            else:
                self._add_run(run, base + begin, base + after, now, done)
                done.append(self._take(truncated=self._cut))
        self._add_run(data[starts[-1] :], base + starts[-1], batch.end, now, done)
        return done

    def _add_run(
        self: Multiline[bytes],
        run: bytes,
        offset: int,
        end: int,
        now: float,
        done: list[Record[bytes]],
    ) -> None:
        """Add lines that continue the pending record (or start it); where a cap falls inside
        them, line by line as ``feed`` does, adding the records cut off to ``done``."""
        lines = run.count(b"\n") + 1
        held = self._bytes + 1 + len(run) if self._pieces else len(run)
        if self._lines + lines <= self.max_lines and held <= self.max_bytes:
            self._hold(run, lines, len(run), offset, end, now)
            return
        position = offset
        for line in run.split(b"\n"):
            done.extend(self.feed(line, now=now, start=position, end=position + len(line) + 1))
            position += len(line) + 1
        self._last = end

    def expire(self, now: float) -> Record[AnyStr] | None:
        """Flush the pending record if no line came for ``timeout`` seconds before ``now``."""
        if self._pieces and now - self._touched >= self.timeout:
            return self.flush()
        return None

    def flush(self) -> Record[AnyStr] | None:
        """Hand over the pending record, if any (at rotation, shutdown or end of input)."""
        return self._take(truncated=self._cut) if self._pieces else None

    def _hold(self, piece: AnyStr, lines: int, size: int, start: int, end: int, now: float) -> None:
        """Append ``lines`` lines (``size`` bytes, joined by \\n) to the pending record."""
        if self._pieces:
            self._bytes += 1 + size
        else:
            self._first = start
            self._bytes = size
        self._pieces.append(piece)
        self._lines += lines
        self._last = end
        self._touched = now

    def _take(self, *, truncated: bool) -> Record[AnyStr]:
        pieces = self._pieces
        text = (b"\n" if isinstance(pieces[0], bytes) else "\n").join(pieces)
        record = Record(text, self._lines, self._first, self._last, truncated)
        self._pieces = []
        self._lines = 0
        self._bytes = 0
        self._cut = False
        return record


# What a start pattern may hold and still match nothing but the characters of one line: printable
# characters (a range between two of them cannot hold a line break), escapes of digits, word
# characters and word boundaries, escaped punctuation, and no negated class or inline flag
# (``(?s)`` lets ``.`` match a newline).
_ONE_LINE_ESCAPE = re.compile(r"\\(?:[dwbBA]|[^\w\s])")
_MAY_CROSS_LINES = re.compile(r"\\|\[\^|\(\?[a-zA-Z-]")


def stays_on_one_line(pattern: str) -> bool:
    """Whether ``pattern`` surely cannot match a line break (conservative: False when unsure).

    Then a match just after a ``\\n`` in a block of lines is a match on that line alone, and
    ``feed_batch`` need not check each candidate start against its own line.
    """
    return pattern.isprintable() and not _MAY_CROSS_LINES.search(_ONE_LINE_ESCAPE.sub("", pattern))
