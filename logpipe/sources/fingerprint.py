"""Which file this is, whatever its path, its inode's history or its size.

A file is known by a fingerprint of its head: the hash of its first ``min(size, HEAD_BYTES)``
bytes, with how many bytes that covers. A followed file's fingerprint also holds its device and
inode (``Fingerprint.key``), so a tiny file (an 80-byte error.log) is known at once; a renamed
file keeps its fingerprint; a file recreated under a reused inode has another head, and a new file
with the same head as an old one (the same lines written again) has another inode. Neither the
inode nor the head is trusted alone. A rotated *copy* (copytruncate) is recognised by its head
alone (``head_matches``), and so is an archive, whose head is read decompressed (``head_key``):
``access.log.1`` and the later ``access.log.1.gz`` are the same content.
"""

from __future__ import annotations

import os
from typing import NamedTuple

HEAD_BYTES = 1024


class Fingerprint(NamedTuple):
    """``key`` is ``"<bytes>:<hash>:<device>:<inode>"``, what checkpoints are stored under."""

    key: str
    head_bytes: int

    @property
    def head(self) -> str:
        """``"<bytes>:<hash>"``: the fingerprint of the head alone."""
        length, digest, _ = self.key.split(":", 2)
        return f"{length}:{digest}"


def head_key(head: bytes) -> str:
    """``"<bytes>:<hash>"`` of a file's first bytes (at most ``HEAD_BYTES`` of them)."""
    import hashlib  # here, not at start: it loads OpenSSL (~2 ms), which parsing never needs

    return f"{len(head)}:{hashlib.blake2b(head, digest_size=16).hexdigest()}"


def fingerprint_of(fd: int, size: int) -> Fingerprint | None:
    """The fingerprint of the open file ``fd`` of ``size`` bytes (None while it is empty)."""
    length = min(size, HEAD_BYTES)
    if length <= 0:
        return None
    head = os.pread(fd, length, 0)
    if len(head) < length:
        return None
    status = os.fstat(fd)
    return Fingerprint(f"{head_key(head)}:{status.st_dev}:{status.st_ino}", length)


def head_matches(fd: int, fingerprint: Fingerprint) -> bool:
    """Whether the open file ``fd`` starts with the head ``fingerprint`` was made from."""
    head = os.pread(fd, fingerprint.head_bytes, 0)
    return len(head) == fingerprint.head_bytes and fingerprint.head == head_key(head)


def key_matches(fd: int, key: str) -> bool:
    """Whether the open file ``fd`` is the file of a stored key: same inode, same head."""
    parts = key.split(":")
    if len(parts) != 4 or not parts[0].isdigit():
        return False
    status = os.fstat(fd)
    if f"{status.st_dev}:{status.st_ino}" != f"{parts[2]}:{parts[3]}":
        return False
    return head_matches(fd, Fingerprint(key, int(parts[0])))
