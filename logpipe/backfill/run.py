"""Replay archived logs (backfill): rotated series oldest first, plain or gzip, exactly once.

Files (``archives``: local paths or fsspec URLs, plain or gzip) are cut into chunks of
complete lines (error logs: of whole records): byte ranges of a plain file, which the engine's
workers read themselves, or lines read and decompressed here. An engine (``engines``:
this process, worker processes, a Dask cluster) parses them and the results come back in order,
so each file's events are sent in file order.

A ledger in the state dir (``replay-ledger.json``, written like the follow checkpoints) keeps,
per file *content* (a hash of the first decompressed KB), how many decompressed bytes were
delivered. So ``access.log.1`` and the later ``access.log.1.gz`` are one file, a file replayed
while it was still growing, or an interrupted replay, continues where it stopped, and a re-run
ships nothing twice (``force`` ignores the ledger). Events keep their own timestamps. Events
the intake refuses are not delivered: the sink raises ``Refused`` (it does not acknowledge
them), the replay stops there, and the ledger stays behind them, so a re-run sends them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from logpipe.backfill.archives import (
    READ_ERRORS,
    content_of,
    file_size,
    is_url,
    open_log,
    open_raw,
    order_series,
)
from logpipe.backfill.engines import INLINE, Engine, in_order
from logpipe.backfill.summary import Summary
from logpipe.backfill.work import Chunk, ChunkResult, ReplaySettings, parse_chunk
from logpipe.checkpoints import Checkpoint, CheckpointStore
from logpipe.event import Event
from logpipe.lines import MAX_LINE_BYTES, READ_CHUNK_BYTES, LineBatch, head_lines, read_batches
from logpipe.metrics.timestamped import BucketedCounts, Sums
from logpipe.parsing.access.detect import detect
from logpipe.parsing.access.parser import AccessParser
from logpipe.parsing.error.layouts import DEFAULT_LAYOUT, ErrorLayout, detect_error_layout
from logpipe.parsing.error.parser import ErrorParser
from logpipe.pipeline.batch import access_batch_pairs, error_batch_pairs
from logpipe.pipeline.rules import Rules
from logpipe.sinks import Interrupted, LogSink
from logpipe.sources.multiline import DEFAULT_START, Multiline

CHUNK_BYTES = 1 << 18  # lines handed to the engine at a time (a worker's unit of work)
MAX_CARRY = 16  # an error chunk with no record start in sight is cut after this many chunks
SAVE_SECONDS = 5.0  # the ledger is also saved this often within a long file
SEND_SLICE = 500  # settled metric points sent per chunk taken (see Replay)
LEDGER = "replay-ledger.json"
HEAD_BYTES = 65_536  # what format detection looks at


@dataclass(frozen=True)
class ReplayFile:
    """One file to replay (a local path or an fsspec URL) and what it holds."""

    path: str
    kind: str  # "access" or "error"


@dataclass
class _FileState:
    """Where a file being replayed stands."""

    replay_file: ReplayFile
    key: str
    head_bytes: int
    end: int  # just past the last line read (what the file's delivery covers in the end)


class Replay:
    """Replay ``files`` into ``sink``, recording delivered offsets in the ledger.

    Parsing runs on ``engine`` (default: this thread), in chunks of about ``chunk_bytes``
    (whose events its workers may append to the sink's file themselves). The ``summary`` and
    the timestamped metric ``counts``, when given, take what every chunk counted.

    A checkpoint, after each file and every ``save_seconds`` within one, makes what was sent
    durable, saves the ledger, then queues the counts settled by then
    (``BucketedCounts.take_settled``) for ``send_counts``: metrics go out as the events do,
    each bucket once, and not before the ledger covers them. They are sent ``SEND_SLICE``
    points with each chunk taken, the rest when the run ends: sent all at once, the ~50k points
    of a checkpoint held the main process for ~0.25 s, with the workers out of work.
    """

    def __init__(
        self,
        files: Iterable[ReplayFile],
        sink: LogSink,
        ledger: CheckpointStore,
        *,
        access_format: str | None = None,
        error_layout: ErrorLayout | None = None,
        timezone: str | None = None,
        multiline_pattern: str = DEFAULT_START,
        max_line_bytes: int = MAX_LINE_BYTES,
        attributes: dict[str, str] | None = None,
        oldest_ms: int | None = None,
        force: bool = False,
        engine: Engine = INLINE,
        chunk_bytes: int = CHUNK_BYTES,
        save_seconds: float = SAVE_SECONDS,
        summary: Summary | None = None,
        counts: BucketedCounts | None = None,
        warn: Callable[[str], None] = lambda message: None,
        progress: Callable[[Replay], None] = lambda replay: None,
        send_counts: Callable[[Sums], None] = lambda sums: None,
        stop: threading.Event | None = None,
        rules: Rules | None = None,
    ) -> None:
        self.files = list(files)
        self.sink = sink
        self.ledger = ledger
        self._delivered = {} if force else dict(ledger.load())
        self._settings = ReplaySettings(
            access_format,
            multiline_pattern,
            max_line_bytes,
            dict(attributes or {}),
            oldest_ms,
            summarize=summary is not None,
            count_metrics=counts is not None,
            error_layout=error_layout,
            timezone=timezone,
            rules=rules,
        )
        self._given_start: Callable[[bytes], bool] = Multiline[bytes](multiline_pattern).is_start
        self._is_start: Callable[[bytes], bool] = self._given_start  # the current file's
        self._said_formats: set[tuple[str, ...]] = set()
        self._said_layouts: set[ErrorLayout] = set()
        self._engine = engine
        self._chunk_bytes = chunk_bytes
        self._save_seconds = save_seconds
        self._summary = summary
        self._counts = counts
        self._warn = warn
        self._progress = progress
        self._send_counts = send_counts
        self._unsent: deque[Sums] = deque()  # settled counts, in slices, waiting to be sent
        self._stop = stop or threading.Event()
        self.interrupted = False  # stopped before the end (``stop``)
        self._saved = time.monotonic()
        self.events = 0
        self.too_old = 0  # events skipped: older than the output accepts
        self.excluded = 0  # lines or records the processing rules dropped
        self.masked = 0  # lines or records they masked
        self.files_done = 0
        self.written = 0  # events the engine's workers appended to the sink's file themselves
        self.already_files = 0  # files the ledger says were delivered whole: nothing sent
        self.already_bytes = 0  # their bytes (decompressed)
        self.bytes_done = 0  # as stored (compressed for gzip), of the files done
        self._reading: BinaryIO | None = None  # the file being read here, as stored
        self._position = 0  # where the ranges of a file read by the engine have got to
        self._consumed = 0  # bytes as stored of the current file, up to its last chunk taken
        self.unreadable: list[str] = []  # files that could not be read to the end (damaged)
        self.bytes_total = sum(file_size(replay_file.path) for replay_file in self.files)

    def run(self) -> None:
        """Send every file not yet delivered, then wait for the sink to deliver everything.

        Once ``stop`` is set, no more is read: what is in flight is sent, and the ledger keeps
        where each file got to (``interrupted`` is then True).
        """
        work = functools.partial(parse_chunk, self._settings)
        engine = self._engine
        current: _FileState | None = None
        try:
            for (state, done, stored), result in in_order(
                engine.executor, work, self._chunks(), window=engine.window
            ):
                current = state
                if result is not None:
                    self._consumed = stored
                    self._take(state, result)
                if done:
                    self._finish(state)
                    current = None
            if self.interrupted and current is not None:
                self._acknowledge(self.sink.drain(), current)
                self._checkpoint()
        except Exception:
            self._checkpoint_after_failure()
            raise
        finally:
            while self._unsent:
                self._send_counts(self._unsent.popleft())

    def _chunks(self) -> Iterator[tuple[tuple[_FileState | None, bool, int], Chunk | None]]:
        """Each file's chunks, then a marker that the file is done; skipped files too."""
        read_to: dict[str, int] = {}  # content key -> offset read to, in this run
        stop = self._stop
        turns = self._engine.turns
        for replay_file in self.files:
            try:
                content = content_of(replay_file.path)
            except READ_ERRORS as error:
                self._unreadable(replay_file.path, 0, error)
                content = None
            if content is None:
                yield (None, True, 0), None
                continue
            key, head_bytes, compressed = content
            done = self._delivered.get(key)
            # The same content read earlier in this run (access.log.1 and access.log.1.gz both
            # given) is still on its way: go on from where that reading stopped.
            start = max(done.offset if done else 0, read_to.get(key, 0))
            state = _FileState(replay_file, key, head_bytes, start)
            formats, layout = self._formats(replay_file), self._layout(replay_file)
            self._is_start = self._record_start(layout)
            sent = False
            for chunk in self._file_chunks(replay_file, start, compressed):
                if stop.is_set():
                    self.interrupted = True
                    return
                if turns is not None:
                    chunk.turn = turns.number()
                chunk.formats, chunk.layout = formats, layout
                state.end = chunk.end
                sent = True
                yield (state, False, self._stored_position()), chunk
            if done is not None and not sent:
                self.already_files += 1
                self.already_bytes += done.offset
            read_to[key] = state.end
            yield (state, True, 0), None

    def _formats(self, replay_file: ReplayFile) -> tuple[str, ...] | None:
        """An access log's formats detected from its first lines, when no format was given
        (None: gunicorn's defaults); each new choice is said once."""
        if replay_file.kind != "access" or self._settings.access_format is not None:
            return None
        detection = detect(_head_lines(replay_file.path))
        if detection is None or detection.default:
            return None
        if detection.formats not in self._said_formats:
            self._said_formats.add(detection.formats)
            self._warn(f"{replay_file.path}: access format {detection.describe()}")
        return detection.formats

    def _layout(self, replay_file: ReplayFile) -> ErrorLayout | None:
        """An error log's layout: the one given, else detected from its first lines (each new
        choice said once)."""
        if replay_file.kind != "error":
            return None
        if self._settings.error_layout is not None:
            return self._settings.error_layout
        layout = detect_error_layout(_head_lines(replay_file.path)) or DEFAULT_LAYOUT
        if layout != DEFAULT_LAYOUT and layout not in self._said_layouts:
            self._said_layouts.add(layout)
            self._warn(f"{replay_file.path}: error log layout {layout.describe()}")
        return layout

    def _record_start(self, layout: ErrorLayout | None) -> Callable[[bytes], bool]:
        """Whether a line begins an error record (where error chunks may be cut)."""
        if layout is None:
            return self._given_start
        return Multiline[bytes](layout.record_start(self._settings.multiline_pattern)).is_start

    def _file_chunks(
        self, replay_file: ReplayFile, start: int, compressed: bool
    ) -> Iterator[Chunk]:
        """A file's chunks from decompressed byte ``start``: ranges the workers read, when
        they can read the file and it is not compressed, else lines read here."""
        path = replay_file.path
        if (self._engine.reads_files or is_url(path)) and not compressed:
            return self._ranges(replay_file, start)
        return self._read(replay_file, start)

    def _ranges(self, replay_file: ReplayFile, start: int) -> Iterator[Chunk]:
        """A plain file as byte ranges of about ``chunk_bytes``, each read where it is parsed;
        each range ends where a line (error log: a record) starts, found here by reading just
        around the cut, so the whole file is read once, however long its lines."""
        path, kind = replay_file.path, replay_file.kind
        size = file_size(path)
        is_start = self._is_start if kind == "error" else None
        with open_raw(path) as probe:
            begin = start
            while begin < size:
                cut = begin + self._chunk_bytes
                stop = size if cut >= size else min(size, next_start(probe, cut, is_start))
                self._position = stop
                yield Chunk(kind, path, start=begin, stop=stop)
                begin = stop
        self._position = 0

    def _read(self, replay_file: ReplayFile, start: int) -> Iterator[Chunk]:
        """A file read and decompressed here, in chunks of whole lines (error log: records);
        a damaged archive ends with what came before the damage."""
        path, end = replay_file.path, start
        with open_log(path) as stream:
            self._reading = getattr(stream, "fileobj", stream)  # gzip: the file under it
            lines = read_batches(
                stream,
                start=start,
                max_bytes=self._settings.max_line_bytes,
                chunk_bytes=min(READ_CHUNK_BYTES, self._chunk_bytes),
            )
            try:
                stream.seek(start)  # gzip streams seek forward by decompressing
                for batches in self._cut(lines, replay_file.kind):
                    end = batches[-1].end
                    yield Chunk(replay_file.kind, path, batches)
            except READ_ERRORS as error:
                self._unreadable(path, end, error)
            finally:
                self._reading = None

    def _unreadable(self, path: str, offset: int, error: Exception) -> None:
        self.unreadable.append(path)
        self._warn(
            f"cannot read {path} past byte {offset:,} ({error or type(error).__name__}); "
            "what came before is sent, the rest is skipped"
        )

    def _stored_position(self) -> int:
        """How far the current file is read, as stored: for gzip, compressed bytes read from
        the file under the decompressor."""
        reading = self._reading
        return reading.tell() if reading is not None else self._position

    @property
    def accepted(self) -> int:
        """Events the output took (the intake answered 2xx, or they were written)."""
        return self.sink.delivered + self.written

    @property
    def refused(self) -> int:
        """Events the intake refused for good (not in the ledger)."""
        return self.sink.stats().get("refused", 0)

    @property
    def pending(self) -> int:
        """Events read and meant for the output, neither accepted nor refused (a stop)."""
        return max(0, self.events - self.too_old - self.accepted - self.refused)

    @property
    def bytes_read(self) -> int:
        """Bytes as stored of the chunks taken so far, not those read ahead (for an ETA)."""
        return self.bytes_done + self._consumed

    def _cut(self, batches: Iterable[LineBatch], kind: str) -> Iterator[list[LineBatch]]:
        """Batches grouped into chunks of about ``chunk_bytes``; for an error log, cut only
        before a record start, so that each chunk holds whole records. A record with no start
        in sight for ``MAX_CARRY`` chunks (4 MiB by default: far past the 1 MB cap, so it is
        cut into flagged pieces anyway) is cut there too."""
        held: list[LineBatch] = []
        size = 0
        for batch in batches:
            held.append(batch)
            size += batch.end - batch.offset
            if size < self._chunk_bytes:
                continue
            ready, held = held, []
            if kind == "error":
                ready, held = cut_before_record(ready, self._is_start)
                if not ready and size >= MAX_CARRY * self._chunk_bytes:
                    ready, held = held, []  # no record start in sight: cut anyway
            if ready:
                yield ready
            size = sum(batch.end - batch.offset for batch in held)
        if held:
            yield held

    def _take(self, state: _FileState | None, result: ChunkResult) -> None:
        """Send a parsed chunk and acknowledge what the sink delivered."""
        assert state is not None
        self.events += result.events
        self.excluded += result.excluded
        self.masked += result.masked
        if result.too_old:
            if not self.too_old:
                self._warn(
                    "events older than --max-age are not sent to this output (the intake "
                    "refuses them); --max-age none sends everything; the summary counts them"
                )
            self.too_old += result.too_old
        if self._summary is not None and result.summary is not None:
            self._summary.merge(result.summary)
        if self._counts is not None and result.counts is not None:
            self._counts.merge(result.counts)
        ends = result.ends.tolist()
        if result.written:  # the worker appended its events to the sink's file itself
            self.written += result.events - result.too_old
            self._acknowledge(ends, state)
        elif self._engine.turns is not None and result.turn >= 0:
            self._engine.turns.take(
                result.turn,
                lambda: self._send(result.encoded, ends, state),
                wait=True,  # due: every chunk before it has been taken, in order
            )
        elif ends:
            self._send(result.encoded, ends, state)
        if time.monotonic() - self._saved >= self._save_seconds:
            self._checkpoint()
        if self._unsent:
            self._send_counts(self._unsent.popleft())
        self._progress(self)

    def _send(self, block: bytes, ends: list[int], state: _FileState) -> None:
        """Hand a chunk's events to the sink; what it delivered is acknowledged, also when it
        gives up at a shutdown (``Interrupted``) after delivering some."""
        try:
            self._acknowledge(self.sink.send_ndjson(block, ends), state)
        except Interrupted as interrupted:
            self._acknowledge(interrupted.delivered, state)
            raise

    def _finish(self, state: _FileState | None) -> None:
        """A file is read: deliver what is left of it and record it in the ledger."""
        if state is not None:
            self._acknowledge(self.sink.drain(), state)
            self._acknowledge([state.end], state)  # trailing empty lines and too-old events
            self._checkpoint()
            self.bytes_done += file_size(state.replay_file.path)
        self._consumed = 0
        self.files_done += 1
        self._progress(self)

    def _acknowledge(self, ends: list[int], state: _FileState) -> None:
        if not ends:
            return
        end = max(ends)
        done = self._delivered.get(state.key)
        if done is None or end > done.offset:
            path = state.replay_file.path
            self._delivered[state.key] = Checkpoint(state.key, path, end, state.head_bytes)

    def _checkpoint(self) -> None:
        """Make what was sent durable, save the ledger, then queue the counts settled by now
        (``SEND_SLICE`` points a slice: ``_take`` sends one per chunk, ``run`` the rest)."""
        self.sink.sync_job()()
        self.ledger.save(self._delivered.values())
        self._saved = time.monotonic()
        if self._counts is not None and (settled := self._counts.take_settled()):
            points = sorted(settled.items())
            for first in range(0, len(points), SEND_SLICE):
                self._unsent.append(dict(points[first : first + SEND_SLICE]))

    def _checkpoint_after_failure(self) -> None:
        """Record what was delivered before a failure (a sink that gave up, a damaged disk),
        so that a re-run does not send it again; the failure itself is what gets reported."""
        with contextlib.suppress(Exception):
            self._checkpoint()


def cut_before_record(
    batches: list[LineBatch], is_start: Callable[[bytes], bool]
) -> tuple[list[LineBatch], list[LineBatch]]:
    """(before, from): the batches split before the last line that starts a record; ``before``
    is empty when the only record start is the very first line, or there is none."""
    for index in range(len(batches) - 1, -1, -1):
        lines = batches[index].lines
        for position in range(len(lines) - 1, -1, -1):
            if not is_start(lines[position]):
                continue
            if position == 0:
                return batches[:index], batches[index:]
            head, tail = batches[index].split(position)
            return [*batches[:index], head], [tail, *batches[index + 1 :]]
    return [], batches


LINE_PIECE = 1 << 16
MAX_RECORD_SEARCH = 4 << 20  # no record start this far after a boundary: stop at a line start


def next_start(stream: BinaryIO, offset: int, is_start: Callable[[bytes], bool] | None) -> int:
    """Where the first line beginning at or after ``offset`` (> 0) begins; with ``is_start``,
    the first line that starts a record (searched for ``MAX_RECORD_SEARCH`` bytes, then the
    line start reached); the end of the file if there is none. Reads only from ``offset - 1``
    to the answer."""
    stream.seek(offset - 1)
    position = offset - 1
    while True:  # the rest of the line holding byte offset - 1 (only its "\n" if it ends there)
        piece = stream.readline(LINE_PIECE)
        position += len(piece)
        if not piece or piece.endswith(b"\n"):
            break
    if is_start is None:
        return position
    limit = position + MAX_RECORD_SEARCH
    while position < limit:
        line = stream.readline(LINE_PIECE)
        if not line or is_start(line):
            return position
        length = len(line)
        while not line.endswith(b"\n"):  # a long line: the rest of it
            line = stream.readline(LINE_PIECE)
            if not line:
                return position + length
            length += len(line)
        position += length
    return position


def file_pairs(
    replay_file: ReplayFile,
    start: int,
    access: AccessParser,
    errors: ErrorParser,
    multiline: Callable[[], Multiline[bytes]],
    max_line_bytes: int,
) -> Iterator[tuple[Event, int]]:
    """(event, end offset) of one file from decompressed byte ``start``."""
    path = replay_file.path
    with open_log(path) as stream:
        stream.seek(start)  # gzip streams seek forward by decompressing
        batches = read_batches(stream, start=start, max_bytes=max_line_bytes)
        if replay_file.kind == "access":
            yield from access_batch_pairs(batches, access, path=path)
        else:
            yield from error_batch_pairs(batches, errors, multiline(), path=path)


def _head_lines(path: str) -> list[str]:
    """A log's first lines (decompressed), to detect its layout from; none if unreadable
    (that is said when the file is read)."""
    try:
        with open_log(path) as stream:
            return head_lines(stream.read(HEAD_BYTES))
    except READ_ERRORS:
        return []


def replay_events(
    access: Iterable[str | Path] = (),
    error: Iterable[str | Path] = (),
    *,
    fmt: str | None = None,
) -> Iterator[Event]:
    """Library use: the events of archived logs, each series oldest first (no ledger; the
    caller delivers them). ``fmt`` is gunicorn's ``access_log_format``; without it, each
    file's format (and each error log's layout) is detected from its first lines."""
    files = [ReplayFile(path, "access") for path in order_series(map(str, access))]
    files += [ReplayFile(path, "error") for path in order_series(map(str, error))]
    for replay_file in files:
        lines = _head_lines(replay_file.path)
        detection = detect(lines) if fmt is None and replay_file.kind == "access" else None
        formats = detection.formats if detection is not None else fmt
        layout = detect_error_layout(lines) or DEFAULT_LAYOUT
        parser, errors = AccessParser(formats), ErrorParser(layout=layout)

        def multiline(layout: ErrorLayout = layout) -> Multiline[bytes]:
            return Multiline(layout.start_pattern)

        for event, _ in file_pairs(replay_file, 0, parser, errors, multiline, MAX_LINE_BYTES):
            yield event
