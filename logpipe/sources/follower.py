"""Follow log files through every kind of rotation: the source of follow mode.

``Follower.poll()`` returns what was appended since the last call, as ``Batch``es, one per read
of a file: access lines (a ``LineBatch``), or error-log records (aggregated per file, flushed
after a quiet period). ``Batch.items()`` gives them one by one. The caller delivers them and
acknowledges with ``ack(key, end)``; ``checkpoint()`` stores, per file fingerprint, the offset below
which everything was acknowledged (never past a partial line or a pending record).

Each poll ``stat``s every followed path; that rescan is the source of truth (watchdog, in
``logpipe.sources.wake``, only makes it happen sooner). For each path:

* a different file now at the path (rename + create, delete + create, a swapped symlink): the
  old one keeps being read to its end, and until nothing was added for ``rotate_wait`` seconds
  (gunicorn workers write to it until they reopen their logs), its pending record first; the
  new one is read from byte 0;
* the same inode, but shorter than the read offset or with another head (copytruncate,
  truncation, delete + create reusing the inode): first the bytes not yet read are taken from
  the rotated copy in the same directory (``access.log.1``...) if one has the same head, then the
  file is read again from 0; what could not be recovered is reported;
* at start, a file with a checkpoint resumes there; others start at the end (``start_at``) or,
  when they appear later, at 0;
* at most ``max_open`` files are open: beyond that, quiet files (read to their end, no record
  pending) are *parked*, their descriptor closed and their position kept, and reopened when they
  grow; a parked file renamed meanwhile is found again by its inode. Files that find no room
  wait their turn, and logpipe says so.

No threads, no globals: the checkpoint store, the clock and the observer are given.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from functools import partial
from typing import BinaryIO, NamedTuple, Protocol

from logpipe.checkpoints import Checkpoint, CheckpointStore
from logpipe.lines import MAX_LINE_BYTES, LineBatch, Unterminated, read_batches
from logpipe.sources.compressed_tail import CompressedTail
from logpipe.sources.fingerprint import (
    HEAD_BYTES,
    Fingerprint,
    fingerprint_of,
    head_key,
    head_matches,
    key_matches,
)
from logpipe.sources.multiline import Multiline, Record
from logpipe.sources.paths import excluded, is_pattern, matches, not_followable
from logpipe.sources.rotated import Drain, compressed_head, compressed_key, drains, open_regular

READ_BUDGET_BYTES = 1 << 20  # per file per poll: memory stays bounded, files are the buffer
HEAD_SAMPLE = 65_536  # an error log's first bytes, for the aggregator to learn its layout
ROTATE_WAIT = 5.0
KEEP_CHECKPOINTS = 256  # checkpoints of files no longer open that are remembered
FD_HEADROOM = 64  # descriptors left for everything else (sockets, the sink, imports)


def default_max_open() -> int:
    """Files that may be open at once, from the process's descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, (soft if soft != resource.RLIM_INFINITY else 65536) - FD_HEADROOM)


class FollowSpec(NamedTuple):
    """A path to follow and what it holds (``access`` lines or ``error`` records)."""

    path: str
    kind: str


class Item(NamedTuple):
    """A complete line (access) or record (error) read from a followed file."""

    kind: str
    path: str
    key: str  # fingerprint key of the file it was read from
    offset: int  # where it starts in that file
    end: int  # just past it: acknowledging ``end`` lets the checkpoint move there
    data: bytes
    truncated: bool


class Batch(NamedTuple):
    """What one read of one followed file completed: access lines, or error records."""

    kind: str
    path: str
    key: str  # fingerprint key of the file it was read from
    lines: LineBatch | None  # access: the complete lines (empty ones included)
    records: tuple[Record[bytes], ...]  # error: the records completed

    @property
    def end(self) -> int:
        """Just past its last line or record: what delivering all of it covers."""
        return self.lines.end if self.lines is not None else self.records[-1].end

    def __len__(self) -> int:
        """Its lines (empty ones included) or records."""
        return len(self.lines) if self.lines is not None else len(self.records)

    def items(self) -> Iterator[Item]:
        """Its non-empty lines, or its records, one by one."""
        kind, path, key = self.kind, self.path, self.key
        if self.lines is not None:
            for line in self.lines:
                if line.data:
                    yield Item(kind, path, key, line.offset, line.end, line.data, line.truncated)
        for record in self.records:
            yield Item(kind, path, key, record.start, record.end, record.text, record.truncated)


def items(batches: Iterable[Batch]) -> list[Item]:
    """The lines and records of ``batches``, one by one, in order."""
    return [item for batch in batches for item in batch.items()]


class FollowedFile(NamedTuple):
    """What a status snapshot shows of one open file."""

    path: str  # where it was followed (a rotated file keeps it)
    kind: str
    key: str  # its fingerprint key ("" while empty and not fingerprinted yet)
    offset: int  # read up to here (whole lines and records)
    acknowledged: int  # delivered up to here (what its checkpoint stores)
    size: int  # as of the last read
    rotated: bool  # renamed away, read until quiet


class Observer(Protocol):
    """Told what happens to the followed files (for logs and metrics)."""

    def notice(self, event: str, path: str, **details: int | str) -> None: ...


class SilentObserver:
    def notice(self, event: str, path: str, **details: int | str) -> None:
        """Ignore everything."""


@dataclass(eq=False)
class _Reader:
    """One open file."""

    spec: FollowSpec
    file: BinaryIO | None  # None while parked
    device: int
    inode: int
    fingerprint: Fingerprint | None
    offset: int  # start of the first unread line
    multiline: Multiline[bytes] | None
    last_data: float
    size: int = 0  # as of the last read
    scanned: int = 0  # read up to here: an unterminated last line is not read again until more
    placeholder: str | None = None  # its key while empty (no head to fingerprint yet)
    unterminated: Unterminated = field(default_factory=Unterminated)  # at ``offset``

    @classmethod
    def of(
        cls,
        spec: FollowSpec,
        file: BinaryIO,
        status: os.stat_result,
        fingerprint: Fingerprint | None,
        offset: int,
        now: float,
    ) -> _Reader:
        """A reader of ``file`` from ``offset``, not quiet until read; an error log's
        aggregator is made at its first read, from the file's head."""
        reader = cls(spec, file, status.st_dev, status.st_ino, fingerprint, offset, None, now)
        reader.size = status.st_size
        return reader

    @property
    def fd(self) -> int:
        assert self.file is not None
        return self.file.fileno()

    @property
    def quiet(self) -> bool:
        """Read to its end with no record pending: it can be parked without loss."""
        return self.offset >= self.size and not (self.multiline and self.multiline.pending)


@dataclass(eq=False)
class _Archived:
    """A compressed rotated file being read at start (from its checkpoint, or whole)."""

    spec: FollowSpec
    key: str
    tail: CompressedTail
    multiline: Multiline[bytes] | None
    start: int


@dataclass
class _Positions:
    """Acknowledged offsets by file fingerprint, and what is known of each file."""

    offsets: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    head_bytes: dict[str, int] = field(default_factory=dict)

    def track(self, fingerprint: Fingerprint, path: str, offset: int) -> None:
        self.offsets.setdefault(fingerprint.key, offset)
        self.paths[fingerprint.key] = path
        self.head_bytes[fingerprint.key] = fingerprint.head_bytes

    def forget(self, key: str) -> None:
        for known in (self.offsets, self.paths, self.head_bytes):
            known.pop(key, None)


class Follower:
    """Follow ``specs``; see the module documentation."""

    def __init__(
        self,
        specs: Iterable[FollowSpec],
        store: CheckpointStore,
        *,
        start_at: str = "end",
        multiline: Callable[[bytes], Multiline[bytes]] = lambda head: Multiline(),
        max_line_bytes: int = MAX_LINE_BYTES,
        rotate_wait: float = ROTATE_WAIT,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
        max_open: int | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        self.specs = tuple(specs)
        self._exclude = tuple(exclude)
        self._store = store
        self._start_at = start_at
        self._multiline = multiline
        self._max_line_bytes = max_line_bytes
        self._rotate_wait = rotate_wait
        self._clock = clock
        self._observer = observer or SilentObserver()
        self._stored = store.load()
        self._stopped_at = store.saved_at()  # when the last run stored its last checkpoint
        self._saved: list[Checkpoint] | None = None  # what the last checkpoint job stored
        # paths a checkpoint names: a file found there that no checkpoint knows is new since
        self._known_paths = {checkpoint.path for checkpoint in self._stored.values()}
        self._archives: list[_Archived] = []
        self._positions = _Positions()
        for checkpoint in self._stored.values():
            self._positions.offsets[checkpoint.identity] = checkpoint.offset
            self._positions.paths[checkpoint.identity] = checkpoint.path
            self._positions.head_bytes[checkpoint.identity] = checkpoint.fingerprint_bytes
        self._current: dict[str, _Reader | None] = {}
        self._retired: list[_Reader] = []
        self._missing: set[str] = set()
        self._problems: dict[str, str] = {}  # path -> why it cannot be followed, as said last
        self._matched: set[str] = set()  # paths found by a wildcard
        self._started = False
        self._max_open = max_open or default_max_open()
        self._waiting: set[str] = set()  # paths with no descriptor to spare, as of the last poll
        self.more = False  # the last poll left a file at its read budget: poll again at once
        self.unsaved_files = False  # a file was opened since the last checkpoint job

    def poll(self) -> list[Batch]:
        """Everything complete that was added since the last poll, oldest files first."""
        now = self._clock()
        batches: list[Batch] = []
        self.more = False
        waiting = len(self._waiting)
        self._waiting.clear()
        followed = [path for spec in self.specs for path in self._followed_paths(spec)]
        if not self._started:
            for path in followed:
                self._recover(path, now)
        self._read_archives(now, batches)
        for path in followed:
            self._scan(path, now, batches)
        if self._waiting and not waiting:
            self._observer.notice(
                "open-files-limit", "", limit=self._max_open, waiting=len(self._waiting)
            )
        self._started = True
        for reader in [*self._retired, *filter(None, self._current.values())]:
            if reader.file is None:
                continue
            self._read(reader, now, batches)
            if reader.multiline is not None:
                record = reader.multiline.expire(now)
                if record is not None:
                    batches.append(self._record_batch(reader, record))
        for reader in list(self._retired):
            if now - reader.last_data >= self._rotate_wait:
                self._close(reader, batches)
        return batches

    def behind(self) -> int:
        """Bytes written to the open files and not read yet."""
        total = 0
        for reader in [*self._retired, *self._current.values()]:
            if reader is not None and reader.file is not None:
                total += max(0, os.fstat(reader.fd).st_size - reader.offset)
        return total

    def files(self) -> list[FollowedFile]:
        """The open files, as of the last poll."""
        return [
            FollowedFile(
                reader.spec.path,
                reader.spec.kind,
                key := (reader.fingerprint.key if reader.fingerprint else reader.placeholder or ""),
                reader.offset,
                self._positions.offsets.get(key, 0),
                reader.size,
                reader in self._retired,
            )
            for reader in [*self._retired, *self._current.values()]
            if reader is not None
        ]

    def acknowledged(self, key: str) -> int:
        """Where file ``key``'s delivered events end (0: nothing of it delivered yet)."""
        return self._positions.offsets.get(key, 0)

    def ack(self, key: str, end: int) -> None:
        """Everything of file ``key`` before ``end`` was delivered."""
        if end > self._positions.offsets.get(key, 0):
            self._positions.offsets[key] = end

    def checkpoint(self) -> None:
        """Store the acknowledged offsets (a no-op when nothing moved)."""
        job = self.checkpoint_job()
        if job is not None:
            job()

    def checkpoint_job(self) -> Callable[[], None] | None:
        """A job that stores the offsets acknowledged until now, or None when they are what
        was last stored; the job may run on another thread while following goes on (one job
        at a time)."""
        open_keys = {
            reader.fingerprint.key
            for reader in [*self._retired, *self._current.values()]
            if reader is not None and reader.fingerprint is not None
        }
        keys = list(self._positions.offsets)
        closed = [key for key in keys if key not in open_keys][-KEEP_CHECKPOINTS:]
        checkpoints = [
            Checkpoint(
                key,
                self._positions.paths.get(key, ""),
                self._positions.offsets[key],
                self._positions.head_bytes.get(key, 0),
            )
            for key in [*closed, *(key for key in keys if key in open_keys)]
        ]
        self.unsaved_files = False
        if checkpoints == self._saved:
            return None
        return partial(self._save, checkpoints)

    def _save(self, checkpoints: list[Checkpoint]) -> None:
        self._store.save(checkpoints)
        self._saved = checkpoints  # only once stored: a failed save is tried again

    def close(self) -> list[Batch]:
        """Flush pending records and close every file (at shutdown)."""
        batches: list[Batch] = []
        for reader in [*self._retired, *filter(None, self._current.values())]:
            if reader.file is not None:
                self._read(reader, self._clock(), batches)
            self._close(reader, batches)
        self._current.clear()
        return batches

    @property
    def problems(self) -> int:
        """Followed paths that exist but cannot be read, as of the last poll."""
        return len(self._problems)

    def _followed_paths(self, spec: FollowSpec) -> list[FollowSpec]:
        """The files ``spec`` names now, each as a spec of its own: the path itself, or the
        files its wildcard matches, with those followed before (renamed away since: their
        readers retire) and, at start, those its checkpoints name."""
        if not is_pattern(spec.path):
            return [spec]
        found = set(matches(spec.path, self._exclude))
        if not self._started:
            found.update(
                path
                for path in self._known_paths
                if fnmatch(path, spec.path) and not excluded(path, self._exclude)
            )
        found.update(
            path
            for path, reader in self._current.items()
            if reader is not None and reader.spec.kind == spec.kind and fnmatch(path, spec.path)
        )
        self._matched.update(found)
        if not found and spec.path not in self._missing:
            self._missing.add(spec.path)
            self._observer.notice("no-match", spec.path)
        elif found:
            self._missing.discard(spec.path)
        return [FollowSpec(path, spec.kind) for path in sorted(found)]

    def _problem(self, path: str, reason: str | None) -> None:
        """Say why ``path`` cannot be followed, once per reason (and when it can again)."""
        before = self._problems.get(path)
        if reason == before:
            return
        if reason is None:
            del self._problems[path]
            self._observer.notice("readable", path)
        else:
            self._problems[path] = reason
            self._observer.notice("unreadable", path, reason=reason)

    # -- restart reconciliation ----------------------------------------------------------------

    def _recover(self, spec: FollowSpec, now: float) -> None:
        """At start: find the files checkpoints name that were rotated away from ``spec.path``
        while logpipe was stopped, and the files rotated there since, and read what is left
        of them (oldest first) before the file now at the path."""
        stored = [cp for cp in self._stored.values() if cp.path == spec.path]
        if not stored:
            return
        fd = open_regular(spec.path)
        if fd is not None:
            try:
                stored = [cp for cp in stored if not key_matches(fd, cp.identity)]
            finally:
                os.close(fd)
        for drain in drains(spec.path, stored, self._stopped_at):
            if drain.sibling.compressed:
                self._recover_compressed(spec, drain, now)
            else:
                self._recover_plain(spec, drain, now)

    def _recover_plain(self, spec: FollowSpec, drain: Drain, now: float) -> None:
        fd = open_regular(drain.sibling.path)
        if fd is None:
            return
        file = os.fdopen(fd, "rb", buffering=0)
        status = os.fstat(fd)
        if drain.key is None:
            fingerprint = fingerprint_of(fd, status.st_size)
            if fingerprint is None:
                file.close()
                return
            self._positions.track(fingerprint, spec.path, 0)
        else:
            fingerprint = Fingerprint(drain.key, drain.head_bytes)
        reader = _Reader.of(spec, file, status, fingerprint, drain.offset, now)
        self._retired.append(reader)  # read to its end, kept open until quiet
        self._recovering(spec, drain, status.st_size - drain.offset)

    def _recover_compressed(self, spec: FollowSpec, drain: Drain, now: float) -> None:
        key = drain.key or compressed_key(drain.sibling.path)
        if key is None:
            return
        if drain.key is None:
            self._positions.offsets.setdefault(key, 0)
            self._positions.paths[key] = spec.path
            self._positions.head_bytes[key] = min(HEAD_BYTES, int(key.partition(":")[0]))
        tail = CompressedTail(drain.sibling.path, drain.offset, max_line_bytes=self._max_line_bytes)
        multiline = None
        if spec.kind == "error":
            multiline = self._multiline(compressed_head(drain.sibling.path, HEAD_SAMPLE) or b"")
        self._archives.append(_Archived(spec, key, tail, multiline, drain.offset))
        self._recovering(spec, drain, None)

    def _recovering(self, spec: FollowSpec, drain: Drain, unread: int | None) -> None:
        why = "never read" if drain.key is None else "rotated while logpipe was stopped"
        details: dict[str, int | str] = {"file": os.path.basename(drain.sibling.path)}
        details["offset"] = drain.offset
        if unread is not None:
            details["bytes"] = unread
        details["why"] = why
        self._observer.notice("recovering", spec.path, **details)

    def _read_archives(self, now: float, batches: list[Batch]) -> None:
        """Read on in the compressed files being recovered, the oldest first."""
        for archived in list(self._archives):
            spec, multiline = archived.spec, archived.multiline
            for lines in archived.tail.read(READ_BUDGET_BYTES):
                if multiline is None:
                    batches.append(Batch(spec.kind, spec.path, archived.key, lines, ()))
                else:
                    records = tuple(multiline.feed_batch(lines, now=now))
                    if records:
                        batches.append(Batch(spec.kind, spec.path, archived.key, None, records))
            if not archived.tail.done:
                self.more = True
                return  # one at a time, in order
            if multiline is not None and (record := multiline.flush()) is not None:
                batches.append(Batch(spec.kind, spec.path, archived.key, None, (record,)))
            self._archives.remove(archived)
            name = os.path.basename(archived.tail.path)
            if archived.tail.problem:
                self._observer.notice(
                    "damaged", spec.path, file=name, problem=archived.tail.problem
                )
            self._observer.notice(
                "recovered", spec.path, file=name, bytes=archived.tail.offset - archived.start
            )

    # -- scanning ------------------------------------------------------------------------------

    def _scan(self, spec: FollowSpec, now: float, batches: list[Batch]) -> None:
        current = self._current.get(spec.path)
        try:
            status = os.stat(spec.path)
        except FileNotFoundError:
            status = None
        except OSError as error:  # a directory on the way that cannot be searched...
            self._problem(spec.path, error.strerror or str(error))
            return
        if status is None:
            if current is not None:
                self._retire(current, now, batches)
            self._problems.pop(spec.path, None)
            if spec.path in self._matched:  # a wildcard's match, renamed away: forget it
                self._current.pop(spec.path, None)
                return
            self._current[spec.path] = None
            if spec.path not in self._missing:
                self._missing.add(spec.path)
                self._observer.notice("missing", spec.path)
            return
        self._missing.discard(spec.path)
        if (reason := not_followable(status.st_mode)) is not None:
            self._problem(spec.path, reason)  # never opened: a FIFO would block the open
            return
        same = current is not None and (status.st_dev, status.st_ino) == (
            current.device,
            current.inode,
        )
        if current is not None and current.file is None:
            if same and status.st_size == current.size:
                return  # parked and unchanged
            if not self._unpark(current, same):
                return
            if same:
                current.size = max(current.size, status.st_size)  # not quiet until read
        if current is not None and same:
            self._check_in_place(current, status.st_size, now, batches)
            return
        if current is not None:
            self._retire(current, now, batches)
            self._current[spec.path] = None
        if self._held(status.st_dev, status.st_ino):
            return  # a wildcard also matches its rotated name: one file, one reader
        if not self._make_room(spec.path):
            self._current[spec.path] = None
            return
        self._current[spec.path] = self._open(spec, now)

    def _held(self, device: int, inode: int) -> bool:
        """Whether a reader already has this file open (under another name)."""
        return any(
            reader is not None
            and reader.file is not None
            and (reader.device, reader.inode) == (device, inode)
            for reader in [*self._retired, *self._current.values()]
        )

    def _open_count(self) -> int:
        readers = [*self._retired, *self._current.values()]
        return sum(1 for reader in readers if reader is not None and reader.file is not None)

    def _make_room(self, path: str) -> bool:
        """A descriptor for ``path``: free, or taken from the quietest open file."""
        if self._open_count() < self._max_open:
            return True
        quiet = [
            reader
            for reader in self._current.values()
            if reader is not None and reader.file is not None and reader.quiet
        ]
        if not quiet:
            self._waiting.add(path)
            return False
        parked = min(quiet, key=lambda reader: reader.last_data)
        assert parked.file is not None
        parked.file.close()
        parked.file = None
        return True

    def _unpark(self, reader: _Reader, same: bool) -> bool:
        """Reopen a parked file: at its path, or (renamed meanwhile) wherever its inode is now."""
        if not self._make_room(reader.spec.path):
            return False
        path = (
            reader.spec.path if same else _find_inode(reader.spec.path, reader.device, reader.inode)
        )
        if path is None:
            return True  # deleted while parked: nothing more to read from it
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - kept open while followed
        except OSError:
            return True
        status = os.fstat(file.fileno())
        if (status.st_dev, status.st_ino) != (reader.device, reader.inode):
            file.close()
            return True
        reader.file = file
        return True

    def _open(self, spec: FollowSpec, now: float) -> _Reader | None:
        try:
            fd = os.open(spec.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            self._problem(spec.path, error.strerror or str(error))
            return None
        status = os.fstat(fd)
        if (reason := not_followable(status.st_mode)) is not None:  # swapped since the stat
            os.close(fd)
            self._problem(spec.path, reason)
            return None
        if spec.path in self._problems:
            self._problem(spec.path, None)
        file = os.fdopen(fd, "rb", buffering=0)
        fingerprint = fingerprint_of(file.fileno(), status.st_size)
        offset = self._start_offset(spec.path, file, status.st_size, fingerprint)
        reader = _Reader.of(spec, file, status, fingerprint, offset, now)
        if fingerprint is None:  # known from now on, by its inode, until it has a head
            fingerprint = Fingerprint(f"{head_key(b'')}:{status.st_dev}:{status.st_ino}", 0)
            reader.placeholder = fingerprint.key
        self._positions.track(fingerprint, spec.path, offset)
        self.unsaved_files = True
        self._observer.notice("opened", spec.path, offset=offset)
        return reader

    def _start_offset(
        self, path: str, file: BinaryIO, size: int, fingerprint: Fingerprint | None
    ) -> int:
        """Where to start reading a file just opened at ``path``: its checkpoint, else the
        start (a file that appeared while following, or that replaced one a checkpoint
        knows), else ``start_at``."""
        if fingerprint is not None:
            for key in sorted(self._positions.offsets, key=_head_length, reverse=True):
                if key_matches(file.fileno(), key):
                    stored = self._positions.offsets[key]
                    if stored <= size:
                        return stored
                    self._observer.notice("truncated", path, offset=stored, size=size)
                    return 0  # shorter than what was read: truncated, start over
        if self._started or self._start_at == "beginning" or size == 0:
            return 0
        if path in self._known_paths:
            return 0
        return _after_last_newline(file, size)

    def _retire(self, reader: _Reader, now: float, batches: list[Batch]) -> None:
        """The file is no longer at its path: read what it has and flush its pending record
        now, before anything of the new file (gunicorn writes a record with one write()); it
        is still read for late lines until nothing was added for ``rotate_wait`` seconds after
        the rename (gunicorn's master writes into it after the SIGUSR1 that follows)."""
        if reader.file is not None:
            self._read(reader, now, batches)
        if reader.multiline is not None:
            record = reader.multiline.flush()
            if record is not None:
                batches.append(self._record_batch(reader, record))
        reader.last_data = now  # kept open until quiet for ``rotate_wait`` after the rename
        self._retired.append(reader)
        self._observer.notice("rotated", reader.spec.path, offset=reader.offset)

    def _check_in_place(self, reader: _Reader, size: int, now: float, batches: list[Batch]) -> None:
        """Truncation, copytruncate, or new content under the same inode: start again at 0."""
        replaced = reader.fingerprint is not None and not head_matches(
            reader.fd, reader.fingerprint
        )
        if size >= reader.offset and not replaced:
            return
        self._recover_from_copy(reader, now, batches)
        if reader.multiline is not None:
            record = reader.multiline.flush()
            if record is not None:
                batches.append(self._record_batch(reader, record))
        self._observer.notice("truncated", reader.spec.path, offset=reader.offset, size=size)
        reader.offset = reader.size = reader.scanned = 0
        reader.unterminated = Unterminated()
        reader.fingerprint = fingerprint_of(reader.fd, size)
        if reader.fingerprint is not None:
            self._positions.track(reader.fingerprint, reader.spec.path, 0)

    def _recover_from_copy(self, reader: _Reader, now: float, batches: list[Batch]) -> None:
        """Read what was not read yet from a rotated copy with the same head, if there is one."""
        unread = reader.size - reader.offset
        fingerprint = reader.fingerprint
        if fingerprint is None:
            return
        directory = os.path.dirname(os.path.abspath(reader.spec.path))
        base = os.path.basename(reader.spec.path)
        for name in sorted(os.listdir(directory)):
            if not name.startswith(base) or name == base or name.endswith(".gz"):
                continue
            try:
                copy = open(os.path.join(directory, name), "rb", buffering=0)  # noqa: SIM115
            except OSError:
                continue
            with copy:
                size = os.fstat(copy.fileno()).st_size
                if size < reader.offset or not head_matches(copy.fileno(), fingerprint):
                    continue
                before = reader.offset
                self._read_from(reader, copy, size, now, batches, budget=None)
                self._observer.notice(
                    "recovered", reader.spec.path, copy=name, bytes=reader.offset - before
                )
                return
        if unread > 0:
            self._observer.notice("missed", reader.spec.path, bytes=unread)

    # -- reading -------------------------------------------------------------------------------

    def _read(self, reader: _Reader, now: float, batches: list[Batch]) -> None:
        size = os.fstat(reader.fd).st_size
        if reader.fingerprint is None:
            reader.fingerprint = fingerprint_of(reader.fd, size)
            if reader.fingerprint is None:
                return
            self._positions.track(reader.fingerprint, reader.spec.path, reader.offset)
            if reader.placeholder is not None:
                self._positions.forget(reader.placeholder)
                reader.placeholder = None
        if size > max(reader.offset, reader.scanned) and reader.file is not None:
            budget = READ_BUDGET_BYTES
            if self._read_from(reader, reader.file, size, now, batches, budget=budget):
                reader.scanned = size
        reader.size = max(reader.size, size)

    def _read_from(
        self,
        reader: _Reader,
        file: BinaryIO,
        size: int,
        now: float,
        batches: list[Batch],
        *,
        budget: int | None,
    ) -> bool:
        """Complete lines from ``reader.offset`` in ``file`` (the reader's own, or a copy);
        whether all of it was read (not stopped by the budget)."""
        assert reader.fingerprint is not None
        key, path, kind = reader.fingerprint.key, reader.spec.path, reader.spec.kind
        start = reader.offset
        if reader.spec.kind == "error" and reader.multiline is None:
            # how its records begin, from its first lines (its layout: known by now)
            reader.multiline = self._multiline(os.pread(file.fileno(), HEAD_SAMPLE, 0))
        # its own file: go on after the unterminated line the last read ended in, if any
        unterminated = reader.unterminated if file is reader.file else Unterminated()
        file.seek(start + unterminated.length)
        reader.unterminated = Unterminated()  # until this read reaches the end
        batches_read = read_batches(
            file,
            start=start,
            max_bytes=self._max_line_bytes,
            final=False,
            unterminated=unterminated,
        )
        for lines in batches_read:
            if reader.multiline is None:
                batches.append(Batch(kind, path, key, lines, ()))
            else:
                records = reader.multiline.feed_batch(lines, now=now)
                if records:
                    batches.append(Batch(kind, path, key, None, tuple(records)))
            reader.offset = lines.end
            reader.last_data = now
            if budget is not None and lines.end - start >= budget:
                self.more = True
                return False
        if file is reader.file:
            reader.unterminated = unterminated
        return True

    def _record_batch(self, reader: _Reader, record: Record[bytes]) -> Batch:
        assert reader.fingerprint is not None
        return Batch(reader.spec.kind, reader.spec.path, reader.fingerprint.key, None, (record,))

    def _close(self, reader: _Reader, batches: list[Batch]) -> None:
        if reader.multiline is not None:
            record = reader.multiline.flush()
            if record is not None:
                batches.append(self._record_batch(reader, record))
        if reader.file is not None:
            reader.file.close()
        if reader in self._retired:
            self._retired.remove(reader)
        self._observer.notice("closed", reader.spec.path, offset=reader.offset)


def _find_inode(path: str, device: int, inode: int) -> str | None:
    """The path in ``path``'s directory of the file with this device and inode, if any."""
    directory = os.path.dirname(os.path.abspath(path))
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                status = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (status.st_dev, status.st_ino) == (device, inode):
                return entry.path
    return None


def _head_length(key: str) -> int:
    length = key.partition(":")[0]
    return int(length) if length.isdigit() else 0


def _after_last_newline(file: BinaryIO, size: int) -> int:
    """Where the line being written at the end of the file starts (start-at end)."""
    position = size
    while position > 0:
        block = min(65536, position)
        chunk = os.pread(file.fileno(), block, position - block)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return position - block + newline + 1
        position -= block
    return 0
