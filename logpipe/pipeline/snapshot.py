"""What a running follower shows of itself: one ``Snapshot`` taken on the follow loop's thread
about once a second (and at each status line), read by other threads (``--http``'s
``/status``, ``/metrics`` and ``/health``) without locks: a new snapshot replaces the old one
whole, and nothing in one changes after it is published."""

from __future__ import annotations

from typing import TypedDict

from logpipe.sinks import SinkState

__all__ = ["FileState", "SinkState", "Snapshot"]


class FileState(TypedDict):
    """One followed file."""

    path: str  # where it is followed (a rotated file keeps the path it was followed at)
    kind: str  # "access" or "error"
    identity: str  # the file's key (fingerprint): what its checkpoint is stored under
    offset: int  # bytes read
    acknowledged: int  # bytes whose events were delivered (what the checkpoint stores)
    size: int  # the file's size now
    behind: int  # bytes written and not read yet (size - offset, at least 0)
    format: str | None  # the access format or error layout it is read in, once known
    rotated: bool  # renamed away and still read until quiet


class Snapshot(TypedDict):
    """The whole follower."""

    version: str  # logpipe's version
    started_at: float  # Unix time
    taken_at: float  # Unix time this snapshot was taken
    lines_read: int  # lines or error records read
    parse_errors: int  # lines that did not parse (sent with logpipe.parse_error)
    logs_paused: bool  # the log sink is congested: lines are read for metrics only
    logs_paused_since: float | None  # Unix time the logs were paused
    write_outage: str | None  # a write failing (full disk, read-only state dir): its cause
    write_outage_since: float | None  # Unix time it started
    checkpoint_at: float | None  # Unix time the last checkpoint was stored
    unreadable: int  # followed paths that exist and cannot be read
    files: list[FileState]
    sink: SinkState
