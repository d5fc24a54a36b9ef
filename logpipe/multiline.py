"""Multi-line aggregation: group error-log lines into records on a start pattern.

A pure component, with no I/O, threads or clock of its own: ``feed`` takes lines (and the time
they arrived, if the caller wants quiet-period flushing), ``expire(now)`` flushes a record that
has been quiet for ``timeout`` seconds, and ``flush`` hands over whatever is pending.
Every line ends up in exactly one record, in order; a record that would pass ``max_lines`` or
``max_bytes`` is emitted flagged ``truncated`` and the rest goes on in a new, also flagged, one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import AnyStr, Generic

from logpipe.lines import MAX_LINE_BYTES

DEFAULT_START = r"\[\d{4}-\d{2}-\d{2}"  # Datadog's log_start_with_date rule, anchored
DEFAULT_MAX_LINES = 1000
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Record(Generic[AnyStr]):
    """Consecutive lines that form one record."""

    text: AnyStr  # the lines joined with "\n"
    lines: int
    start: int  # offset of the first line (as given to feed)
    end: int  # end offset of the last line
    truncated: bool = False  # cut by a cap, or the continuation of a cut record


class Multiline(Generic[AnyStr]):
    """Aggregate lines into records that begin with a line matching ``start_pattern``.

    Lines may be ``str`` or ``bytes`` (one kind per aggregator); records are of the same kind.
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
        self._start_bytes = re.compile(start_pattern.encode("utf-8"))
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._lines: list[AnyStr] = []
        self._bytes = 0
        self._first = 0
        self._last = 0
        self._cut = False  # the pending record continues one that was cut
        self._touched = 0.0

    @property
    def pending(self) -> bool:
        """Whether lines are held waiting for the rest of their record."""
        return bool(self._lines)

    @property
    def pending_start(self) -> int | None:
        """Offset of the first held line (a checkpoint must not pass it), or None."""
        return self._first if self._lines else None

    def is_start(self, line: AnyStr) -> bool:
        """Whether ``line`` begins a record."""
        start = self._start_bytes if isinstance(line, bytes) else self._start_text
        return start.match(line) is not None

    def feed(
        self, line: AnyStr, *, now: float = 0.0, start: int = 0, end: int = 0
    ) -> list[Record[AnyStr]]:
        """Add one line (no line ending); return the records it completes (zero or one)."""
        done: list[Record[AnyStr]] = []
        size = len(line.encode("utf-8", "replace")) if isinstance(line, str) else len(line)
        if self._lines:
            if self.is_start(line):
                done.append(self._take(truncated=self._cut))
            elif len(self._lines) >= self.max_lines or self._bytes + 1 + size > self.max_bytes:
                done.append(self._take(truncated=True))
                self._cut = True
        if not self._lines:
            self._first = start
            self._bytes = size
        else:
            self._bytes += 1 + size
        self._lines.append(line)
        self._last = end
        self._touched = now
        return done

    def expire(self, now: float) -> Record[AnyStr] | None:
        """Flush the pending record if no line came for ``timeout`` seconds before ``now``."""
        if self._lines and now - self._touched >= self.timeout:
            return self.flush()
        return None

    def flush(self) -> Record[AnyStr] | None:
        """Hand over the pending record, if any (at rotation, shutdown or end of input)."""
        return self._take(truncated=self._cut) if self._lines else None

    def _take(self, *, truncated: bool) -> Record[AnyStr]:
        lines = self._lines
        text = (b"\n" if isinstance(lines[0], bytes) else "\n").join(lines)
        record = Record(text, len(lines), self._first, self._last, truncated)
        self._lines = []
        self._bytes = 0
        self._cut = False
        return record
