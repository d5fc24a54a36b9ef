"""The rotated siblings of a followed file, and which stored checkpoint each one carries on.

logrotate and its peers leave a file's past beside it under a few names: ``access.log.1``,
``access.log.2``... (``rotate N``), ``access.log-20261201`` (``dateext``), each possibly
compressed (``.gz``). ``siblings(path)`` lists them oldest first. ``match`` tells which stored
checkpoint a sibling continues: the same file renamed (device, inode and head), a copy of it
(``copytruncate``: the head alone), or its compressed form (the head, decompressed).
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import zlib
from collections.abc import Iterable
from typing import NamedTuple

from logpipe.checkpoints import Checkpoint
from logpipe.sources.fingerprint import HEAD_BYTES, Fingerprint, head_key, head_matches, key_matches

_SUFFIX = re.compile(r"(?:\.(?P<number>[0-9]{1,6})|-(?P<date>[0-9][0-9_-]{3,30}))(?P<gz>\.gz)?")


class Sibling(NamedTuple):
    """A rotated file beside a followed path."""

    path: str
    compressed: bool


def siblings(path: str) -> list[Sibling]:
    """The rotated files of ``path`` in its directory, oldest first (numbered ones by number,
    highest first; dated ones by date)."""
    directory, base = os.path.split(os.path.abspath(path))
    dated: list[tuple[str, Sibling]] = []
    numbered: list[tuple[int, Sibling]] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        if not name.startswith(base):
            continue
        found = _SUFFIX.fullmatch(name, len(base))
        if found is None:
            continue
        sibling = Sibling(os.path.join(directory, name), found["gz"] is not None)
        if found["number"] is not None:
            numbered.append((int(found["number"]), sibling))
        else:
            dated.append((found["date"], sibling))
    dated.sort()
    numbered.sort(reverse=True)
    return [sibling for _, sibling in dated] + [sibling for _, sibling in numbered]


class Match(NamedTuple):
    """A sibling that carries on a stored checkpoint."""

    checkpoint: Checkpoint
    same_file: bool  # the very file (renamed), not a copy or a compressed form


def match(sibling: Sibling, checkpoints: Iterable[Checkpoint]) -> Match | None:
    """The checkpoint whose file ``sibling`` is (renamed), copies or compresses, if any."""
    candidates = list(checkpoints)
    if sibling.compressed:
        head = compressed_head(sibling.path)
        if head is None:
            return None
        for checkpoint in candidates:
            if checkpoint.fingerprint_bytes and _head_of(checkpoint) == head_key(
                head[: checkpoint.fingerprint_bytes]
            ):
                return Match(checkpoint, same_file=False)
        return None
    fd = open_regular(sibling.path)
    if fd is None:
        return None
    try:
        for checkpoint in candidates:
            if checkpoint.fingerprint_bytes and key_matches(fd, checkpoint.identity):
                return Match(checkpoint, same_file=True)
        for checkpoint in candidates:
            if checkpoint.fingerprint_bytes and head_matches(
                fd, Fingerprint(checkpoint.identity, checkpoint.fingerprint_bytes)
            ):
                return Match(checkpoint, same_file=False)
    finally:
        os.close(fd)
    return None


def compressed_head(path: str, size: int = HEAD_BYTES) -> bytes | None:
    """The first ``size`` bytes of a gzip file, decompressed (None if unreadable)."""
    try:
        with gzip.open(path, "rb") as archive:
            return archive.read(size)
    except (OSError, EOFError, zlib.error):
        return None


def compressed_key(path: str) -> str | None:
    """A key for a gzip file no checkpoint knows: its decompressed head, its inode."""
    head = compressed_head(path)
    if not head:
        return None
    try:
        status = os.stat(path)
    except OSError:  # gone since
        return None
    return f"{head_key(head)}:{status.st_dev}:{status.st_ino}"


def open_regular(path: str) -> int | None:
    """A read-only descriptor of ``path`` if it is a regular file (never blocks on a FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _head_of(checkpoint: Checkpoint) -> str:
    length, digest, _ = checkpoint.identity.split(":", 2)
    return f"{length}:{digest}"


class Drain(NamedTuple):
    """A rotated file to read at start, from ``offset``: acknowledged under ``key``."""

    sibling: Sibling
    key: str | None  # the checkpoint it carries on (None: a file logpipe never saw)
    offset: int
    head_bytes: int


def drains(path: str, stored: Iterable[Checkpoint], stopped_at: float | None) -> list[Drain]:
    """What to read, oldest first, from the rotated siblings of ``path`` at start.

    A sibling that carries on a checkpoint is read from it (unless it is known to be read to
    its end and was not modified since logpipe stopped). A sibling no checkpoint knows was
    written while logpipe was down, and is read whole, when it is newer than a sibling that
    does carry one or, when none does (their files are gone), when it was modified after
    ``stopped_at`` (the last checkpoint's time).
    """
    unresolved = list(stored)
    found = siblings(path)
    matches: dict[int, Match] = {}
    for index, sibling in enumerate(found):
        if not unresolved:
            break
        matched = match(sibling, unresolved)
        if matched is not None:
            matches[index] = matched
            unresolved.remove(matched.checkpoint)
    newest_known = max(matches, default=-1)
    plan: list[Drain] = []
    for index, sibling in enumerate(found):
        matched = matches.get(index)
        if matched is not None:
            checkpoint = matched.checkpoint
            # the renamed file itself may still be written to (until its writer reopens)
            growing = matched.same_file and (
                stopped_at is None or _modified_after(sibling, stopped_at)
            )
            if growing or not _read_to_end(sibling, checkpoint.offset):
                plan.append(
                    Drain(
                        sibling,
                        checkpoint.identity,
                        checkpoint.offset,
                        checkpoint.fingerprint_bytes,
                    )
                )
        elif index > newest_known >= 0 or (
            newest_known < 0 and stopped_at is not None and _modified_after(sibling, stopped_at)
        ):
            plan.append(Drain(sibling, None, 0, 0))
    return plan


def _read_to_end(sibling: Sibling, offset: int) -> bool:
    """Whether ``offset`` is the end of the sibling's content (for a gzip file, as its trailer
    says: no need to decompress it all to find out)."""
    try:
        if not sibling.compressed:
            return os.stat(sibling.path).st_size <= offset
        with open(sibling.path, "rb") as archive:
            archive.seek(-4, os.SEEK_END)
            return int.from_bytes(archive.read(4), "little") == offset % (1 << 32)
    except OSError:
        return False


def _modified_after(sibling: Sibling, moment: float) -> bool:
    try:
        return os.stat(sibling.path).st_mtime > moment
    except OSError:
        return False
