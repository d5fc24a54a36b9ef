"""Write-behind for output files: the kernel writes appended data to disk as it comes."""

from __future__ import annotations

import os
from contextlib import suppress

_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None)  # Linux and most Unixes; not macOS


def write_behind(fd: int, start: int, end: int) -> None:
    """Ask the kernel to start writing bytes ``[start, end)`` of ``fd`` to disk now, without
    waiting, and to drop them from the page cache once written (an output file is not read
    back).

    Without it, a large output stays dirty in memory (Linux starts writing back in the
    background only at 10 % of RAM), and the fsync of the next checkpoint writes hundreds of
    megabytes at once while every writer of the file waits on the filesystem's journal. A no-op
    where it does not apply (pipes, terminals, systems without ``posix_fadvise``).
    """
    if _DONTNEED is not None and end > start:
        with suppress(OSError):
            os.posix_fadvise(fd, start, end - start, _DONTNEED)
