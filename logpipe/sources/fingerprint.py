"""File identity: which file this is, whatever its path, its inode's history or its size.

A file is known by a fingerprint of its head, the hash of its first ``min(size, HEAD_BYTES)``
bytes at the moment logpipe first read it (with how many bytes that covers), together with its
device and inode. So a tiny file (an 80-byte error.log) has an identity at once; a renamed file
keeps its identity; a file recreated under a reused inode has another head, and a new file with
the same head as an old one (a test writing the same lines again) has another inode. Neither the
inode nor the head is trusted alone. A rotated *copy* (copytruncate) is recognised by its head
alone (``head_matches``).
"""

from __future__ import annotations

import os
from typing import NamedTuple

HEAD_BYTES = 1024


class Identity(NamedTuple):
    """``key`` is ``"<bytes>:<hash>:<device>:<inode>"``, what checkpoints are stored under."""

    key: str
    head_bytes: int

    @property
    def head(self) -> str:
        """``"<bytes>:<hash>"``: the fingerprint of the head alone."""
        length, digest, _ = self.key.split(":", 2)
        return f"{length}:{digest}"


def identity_of(fd: int, size: int) -> Identity | None:
    """The identity of the open file ``fd`` of ``size`` bytes (None while it is empty)."""
    length = min(size, HEAD_BYTES)
    if length <= 0:
        return None
    head = os.pread(fd, length, 0)
    if len(head) < length:
        return None
    status = os.fstat(fd)
    return Identity(f"{length}:{_digest(head)}:{status.st_dev}:{status.st_ino}", length)


def head_matches(fd: int, identity: Identity) -> bool:
    """Whether the open file ``fd`` starts with the head ``identity`` was made from."""
    head = os.pread(fd, identity.head_bytes, 0)
    return len(head) == identity.head_bytes and identity.head == f"{len(head)}:{_digest(head)}"


def key_matches(fd: int, key: str) -> bool:
    """Whether the open file ``fd`` is the file of a stored key: same inode, same head."""
    parts = key.split(":")
    if len(parts) != 4 or not parts[0].isdigit():
        return False
    status = os.fstat(fd)
    if f"{status.st_dev}:{status.st_ino}" != f"{parts[2]}:{parts[3]}":
        return False
    return head_matches(fd, Identity(key, int(parts[0])))


def _digest(head: bytes) -> str:
    import hashlib  # here, not at start: it loads OpenSSL (~2 ms), which parsing never needs

    return hashlib.blake2b(head, digest_size=16).hexdigest()
