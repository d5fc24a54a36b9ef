"""The dead-letter file of a state dir: batches the intake refused for good, as NDJSON.

Writers (the Datadog sink of a follower, of ``logpipe resend``) append whole batches under an
exclusive ``flock`` of the file (``append_dead_letters``), after checking that the file they
locked is still the one at the path. ``take`` renames the file away atomically to resend it,
then takes the lock of the renamed file once: a writer that had opened it before the rename
has finished by then, and one that locks it later finds it renamed and opens the path again,
which makes a new file. So nothing appended is lost, whenever the file is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from logpipe.sinks.append import AppendFile, cut_torn_tail

DEAD_LETTERS = "dead-letters.ndjson"  # in the state dir: what followers and resend append to
RESENDING = "dead-letters.resending.ndjson"  # the file a resend took, until it is sent
PROGRESS = "dead-letters.resending.offset"  # how far into it the resend got (bytes)


def append_dead_letters(path: Path, block: bytes, warn: Callable[[str], None]) -> None:
    """Append ``block`` (whole NDJSON lines) to the dead-letter file at ``path`` and sync it;
    ``OSError`` (naming the file) when it cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        file = AppendFile.open(str(path), warn, lock=True)
        if _is_at(file.fileno(), path):
            break
        file.close()  # taken by a resend meanwhile: append to the new file at the path
    try:
        file.write(block)
        os.fsync(file.fileno())
    except OSError as error:
        raise OSError(error.errno, error.strerror, file.path) from None
    finally:
        file.close()


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the one at ``path`` now."""
    try:
        here = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (opened.st_dev, opened.st_ino)


def take(live: Path, taken: Path, warn: Callable[[str], None]) -> bool:
    """Rename the dead-letter file ``live`` to ``taken`` (False: there is none), wait for a
    writer that had it open, and cut a torn last line (a writer killed mid-write)."""
    try:
        os.rename(live, taken)
    except FileNotFoundError:
        return False
    sync_directory(taken.parent)
    fd = os.open(taken, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if cut := cut_torn_tail(fd):
            warn(f"{live} ended in {cut} bytes of an event cut short (a crash mid-write): cut")
            os.fsync(fd)
    finally:
        os.close(fd)
    return True


def sync_directory(directory: Path) -> None:
    """Make the renames and removals in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # some file systems refuse to sync a directory
            os.fsync(fd)
    finally:
        os.close(fd)
