"""Archived logs: finding them (globs, fsspec URLs), putting each rotated series in the order it
was written, and opening them by content (gzip by its magic bytes, ISA-L's gzip when installed).

``order_series`` puts each series oldest first, whatever order the shell gave:
``access.log.3.gz access.log.2.gz access.log.1 access.log`` and dateext names
(``access.log-20261124.gz``). ``content_of`` names a file by the fingerprint of its first
decompressed KB, so ``access.log.1`` and the later ``access.log.1.gz`` are the same content.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, NamedTuple, TypeVar, cast

from logpipe.sources.fingerprint import HEAD_BYTES, head_key

GZIP_MAGIC = b"\x1f\x8b"
_ROTATION = re.compile(r"^(?P<base>.+?)(?:\.(?P<number>\d+)|-(?P<date>\d{8,10}))?(?:\.gz)?$")
PathLike = TypeVar("PathLike", str, Path)
READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, zlib.error)
try:
    from isal import isal_zlib

    READ_ERRORS += (cast(type[Exception], isal_zlib.error),)
except ImportError:
    pass


def order_series(paths: Iterable[PathLike]) -> list[PathLike]:
    """Each rotation series oldest first (``.3.gz``, ``.2``, ``.1``, then the live file)."""

    def key(path: PathLike) -> tuple[str, int, int]:
        folder, _, name = str(path).rpartition("/")
        match = _ROTATION.match(name)
        assert match is not None
        base = f"{folder}/{match['base']}"
        if match["number"] is not None:
            return base, 0, -int(match["number"])  # a larger number is older
        if match["date"] is not None:
            return base, 1, int(match["date"])  # dateext: an earlier date is older
        return base, 2, 0  # the live file, newest

    return sorted(dict.fromkeys(paths), key=key)


def is_url(path: str) -> bool:
    return "://" in path


def open_raw(path: str) -> BinaryIO:
    """The file's bytes as stored, from disk or (a URL) through fsspec."""
    if not is_url(path):
        return open(path, "rb")
    try:
        import fsspec
    except ImportError:
        raise OSError(f"{path}: URLs need `pip install 'logpipe[dask]'` (fsspec)") from None
    return fsspec.open(path, "rb").open()  # type: ignore[no-any-return]


def file_size(path: str) -> int:
    """Bytes as stored (compressed for gzip)."""
    if not is_url(path):
        return Path(path).stat().st_size
    import fsspec

    fs, target = fsspec.core.url_to_fs(path)
    return int(fs.size(target))


def open_log(path: str | Path) -> BinaryIO:
    """The file's bytes, decompressed if it is gzip (by magic bytes, whatever its name)."""
    file = open_raw(str(path))
    if file.read(2) == GZIP_MAGIC:
        file.seek(0)
        return _gzip_reader(file)
    file.seek(0)
    return file


def _gzip_reader(file: BinaryIO) -> BinaryIO:
    """A decompressing reader: ISA-L's (several times faster) when installed, else zlib's."""
    try:
        from isal import igzip as gzip_module
    except ImportError:
        import gzip as gzip_module  # type: ignore[no-redef]
    return gzip_module.GzipFile(fileobj=file)  # type: ignore[no-untyped-call,return-value]


class Content(NamedTuple):
    """What a file holds, named by its decompressed head."""

    key: str  # the head's length and hash
    head_bytes: int  # how many decompressed bytes were hashed
    compressed: bool  # gzip


def content_of(path: str) -> Content | None:
    """The file's ``Content``; None for an empty file."""
    with open_raw(path) as file:
        compressed = file.read(2) == GZIP_MAGIC
        file.seek(0)
        head = (_gzip_reader(file) if compressed else file).read(HEAD_BYTES)
    if not head:
        return None
    return Content(head_key(head), len(head), compressed)


def expand(patterns: Iterable[str]) -> list[str]:
    """Paths for the given names or globs, local or fsspec URLs (a shell may have expanded
    local globs already)."""
    paths: list[str] = []
    for pattern in patterns:
        if not any(character in pattern for character in "*?["):
            paths.append(pattern)
        elif is_url(pattern):
            import fsspec

            fs, target = fsspec.core.url_to_fs(pattern)
            paths += sorted(fs.unstrip_protocol(match) for match in fs.glob(target))
        else:
            import glob

            paths += sorted(glob.glob(pattern))
    return paths
