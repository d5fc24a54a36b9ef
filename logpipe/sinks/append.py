"""Appending to an NDJSON file in whole lines only, whatever fails.

A file opened here is first cut back to just after its last newline (a run killed mid-write,
or a disk that filled up, can leave half an event at its end; that event was never covered by
a checkpoint or the replay ledger, so it is sent again). A write that fails part-way (a full
disk) is undone: the file is cut back to where it ended before, so a retry appends whole
events after whole events.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable

TAIL_PIECE = 1 << 16  # read backwards this much at a time to find the last newline


class AppendFile:
    """A file appended to with ``O_APPEND`` in whole writes (see the module documentation)."""

    def __init__(self, fd: int, path: str) -> None:
        self.path = path
        self._fd = fd
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)  # not /dev/null, a FIFO...
        self._cut_to: int | None = None  # where a failed write's undo must still cut to

    @classmethod
    def open(cls, path: str, report: Callable[[str], None], *, lock: bool = False) -> AppendFile:
        """Open ``path`` to append to (creating it), cut back to its last whole line; the cut
        is reported in one line. With ``lock``, an exclusive ``flock`` is taken first (held
        until ``close``), so that writers in other processes never cut each other's lines."""
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            if lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
            cut = cut_torn_tail(fd)
        except OSError:
            os.close(fd)
            raise
        if cut:
            report(
                f"{path} ended in {cut} bytes of an event cut short (a crash or a full disk "
                "mid-write): cut them off; that event is sent again"
            )
        return cls(fd, path)

    def write(self, data: bytes | memoryview) -> int:
        """Append all of ``data``, or nothing: raises the ``OSError`` (naming the file) after
        cutting the file back to where it ended."""
        if self._cut_to is not None:  # the undo of a failed write did not happen yet
            os.ftruncate(self._fd, self._cut_to)
            self._cut_to = None
        start = self.tell()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as error:
            self._undo(start)
            raise OSError(error.errno, error.strerror, self.path) from None
        return len(data)

    def _undo(self, start: int) -> None:
        if not self._regular:
            return  # a device or a pipe cannot be cut back
        self._cut_to = start
        try:
            os.ftruncate(self._fd, start)
            os.lseek(self._fd, start, os.SEEK_SET)  # (a descriptor without O_APPEND: stdout)
        except OSError:
            return  # tried again before the next write
        self._cut_to = None

    def tell(self) -> int:
        """Where the file ends (0 for what is not a regular file)."""
        return os.fstat(self._fd).st_size if self._regular else 0

    def flush(self) -> None:
        """Nothing to do: every write goes straight to the file."""

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        os.close(self._fd)


def cut_torn_tail(fd: int) -> int:
    """Cut a regular file back to just after its last newline (to nothing if it has none);
    the bytes cut."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        return 0
    end = info.st_size
    while end > 0:
        start = max(0, end - TAIL_PIECE)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < info.st_size:
        os.ftruncate(fd, end)
    return info.st_size - end
