"""What a followed path names: one file, or the files a wildcard matches (``*``, ``?``,
``[...]``), less those ``--exclude`` names and compressed archives; and why a path that exists
cannot be followed."""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Sequence
from fnmatch import fnmatch

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")  # rotated archives: never followed live


def is_pattern(path: str) -> bool:
    """Whether ``path`` holds wildcards (else it names one file, present or not)."""
    return glob.has_magic(path)


def matches(pattern: str, exclude: Sequence[str]) -> list[str]:
    """The regular files and other entries ``pattern`` matches now, sorted; a name matching an
    ``exclude`` pattern (against the whole path or the file name) or a compressed suffix is
    left out. A pattern naming a directory's files (``dir/*``) does not descend."""
    return sorted(
        path
        for path in glob.glob(pattern)
        if not path.endswith(COMPRESSED) and not excluded(path, exclude)
    )


def excluded(path: str, exclude: Sequence[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch(path, pattern) or fnmatch(name, pattern) for pattern in exclude)


def not_followable(mode: int) -> str | None:
    """Why a file of this mode cannot be followed (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISDIR: "is a directory",
        stat.S_ISFIFO: "is a FIFO",
        stat.S_ISSOCK: "is a socket",
        stat.S_ISCHR: "is a character device",
        stat.S_ISBLK: "is a block device",
    }
    for test, reason in kinds.items():
        if test(mode):
            return f"{reason}, not a regular file"
    return "not a regular file"
