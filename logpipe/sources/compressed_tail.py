"""The rest of a compressed rotated file, from an offset in its decompressed content, read a
budget at a time (logrotate's ``compress`` gzipped it while logpipe was stopped)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator

from logpipe.lines import LineBatch, read_batches


class CompressedTail:
    """Lines of a gzip file from ``offset``; ``problem`` says why it ended early, if it did."""

    def __init__(self, path: str, offset: int, *, max_line_bytes: int) -> None:
        self.path = path
        self.offset = offset
        self.done = False
        self.problem: str | None = None
        self._file: gzip.GzipFile | None = None
        self._batches: Iterator[LineBatch] | None = None
        self._max_line_bytes = max_line_bytes

    def read(self, budget: int) -> list[LineBatch]:
        """The next batches, about ``budget`` bytes of them."""
        taken: list[LineBatch] = []
        try:
            batches = self._open()
            start = self.offset
            for batch in batches:
                taken.append(batch)
                self.offset = batch.end
                if self.offset - start >= budget:
                    return taken
        except (OSError, EOFError, zlib.error) as error:
            self.problem = str(error) or type(error).__name__
        self.close()
        return taken

    def close(self) -> None:
        self.done = True
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> Iterator[LineBatch]:
        if self._batches is None:
            self._file = gzip.open(self.path, "rb")  # noqa: SIM115 - open across polls
            self._file.seek(self.offset)  # decompresses up to there
            self._batches = read_batches(
                self._file, start=self.offset, max_bytes=self._max_line_bytes
            )
        return self._batches
