"""Replay archived logs (backfill): rotated series oldest first, plain or gzip, exactly once.

``order_series`` puts each series in the order it was written, whatever order the shell gave:
``access.log.3.gz access.log.2.gz access.log.1 access.log`` and dateext names
(``access.log-20261124.gz``). Files are opened by content: gzip is recognised by its magic
bytes, not its name.

A ledger in the state dir (``replay-ledger.json``, written like the follow checkpoints) keeps,
per file *content* (a hash of the first decompressed KB), how many decompressed bytes were
delivered. So ``access.log.1`` and the later ``access.log.1.gz`` are one file, a file replayed
while it was still growing continues where it stopped, and a re-run ships nothing twice
(``force`` ignores the ledger). Events keep their own timestamps.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from logpipe.enrich import Event
from logpipe.file_events import access_pairs, error_pairs
from logpipe.lines import MAX_LINE_BYTES
from logpipe.multiline import Multiline
from logpipe.parsing.access import AccessParser
from logpipe.parsing.error import ErrorParser
from logpipe.sinks import LogSink, Token
from logpipe.sources.checkpoints import Checkpoint, CheckpointStore

HEAD_BYTES = 1024
SEND_CHUNK = 5000  # events handed to the sink at a time: memory stays bounded
LEDGER = "replay-ledger.json"
_ROTATION = re.compile(r"^(?P<base>.+?)(?:\.(?P<number>\d+)|-(?P<date>\d{8,10}))?(?:\.gz)?$")


@dataclass(frozen=True)
class ReplayFile:
    """One file to replay and what it holds (``access`` or ``error``)."""

    path: Path
    kind: str


def order_series(paths: Iterable[Path]) -> list[Path]:
    """Each rotation series oldest first (``.3.gz``, ``.2``, ``.1``, then the live file)."""

    def key(path: Path) -> tuple[str, int, int]:
        match = _ROTATION.match(path.name)
        assert match is not None
        base = str(path.with_name(match["base"]))
        if match["number"] is not None:
            return base, 0, -int(match["number"])  # a larger number is older
        if match["date"] is not None:
            return base, 1, int(match["date"])  # dateext: an earlier date is older
        return base, 2, 0  # the live file, newest

    return sorted(dict.fromkeys(paths), key=key)


def open_log(path: Path) -> BinaryIO:
    """The file's bytes, decompressed if it is gzip (by magic bytes, whatever its name)."""
    file = open(path, "rb")  # noqa: SIM115 - returned to the caller
    if file.read(2) == b"\x1f\x8b":
        file.seek(0)
        return gzip.GzipFile(fileobj=file)  # type: ignore[return-value]
    file.seek(0)
    return file


def content_key(path: Path) -> tuple[str, int] | None:
    """(key, bytes hashed) for a file's decompressed head; None for an empty file."""
    with open_log(path) as stream:
        head = stream.read(HEAD_BYTES)
    if not head:
        return None
    return f"{len(head)}:{hashlib.blake2b(head, digest_size=16).hexdigest()}", len(head)


class Replay:
    """Replay ``files`` into ``sink``, recording delivered offsets in the ledger."""

    def __init__(
        self,
        files: Iterable[ReplayFile],
        sink: LogSink,
        ledger: CheckpointStore,
        *,
        access: AccessParser,
        errors: ErrorParser,
        attributes: dict[str, str],
        multiline: Callable[[], Multiline[bytes]] = Multiline,
        force: bool = False,
        max_line_bytes: int = MAX_LINE_BYTES,
        oldest_ms: int | None = None,
        observers: Iterable[Callable[[Event], object]] = (),
        warn: Callable[[str], None] = lambda message: None,
        progress: Callable[[Replay], None] = lambda replay: None,
        after_file: Callable[[], None] = lambda: None,
    ) -> None:
        self.files = list(files)
        self.sink = sink
        self.ledger = ledger
        self._delivered = {} if force else {key: cp for key, cp in ledger.load().items()}
        self._access = access
        self._errors = errors
        self._attributes = attributes
        self._multiline = multiline
        self._max_line_bytes = max_line_bytes
        self._oldest_ms = oldest_ms
        self._observers = tuple(observers)
        self._warn = warn
        self._progress = progress
        self._after_file = after_file
        self.events = 0
        self.too_old = 0  # events skipped: older than the output accepts
        self.files_done = 0
        self.bytes_done = 0  # on disk (compressed for gzip), of the files done
        self.bytes_total = sum(replay_file.path.stat().st_size for replay_file in self.files)

    def run(self) -> None:
        """Send every file not yet delivered, then wait for the sink to deliver everything."""
        for replay_file in self.files:
            identity = content_key(replay_file.path)
            if identity is None:
                continue
            key, head_bytes = identity
            done = self._delivered.get(key)
            start = done.offset if done else 0
            chunk: list[tuple[Event, Token]] = []
            skipped: list[Token] = []  # acknowledged once what came before them is delivered
            for event, token in self._events(replay_file, key, start):
                if self._too_old(event):
                    skipped.append(token)
                    continue
                chunk.append((event, token))
                if len(chunk) >= SEND_CHUNK:
                    self._acknowledge(self.sink.send(chunk), replay_file, head_bytes)
                    chunk = []
                    self._progress(self)
            self._acknowledge(self.sink.send(chunk), replay_file, head_bytes)
            self._acknowledge(self.sink.drain(), replay_file, head_bytes)
            self._acknowledge(skipped, replay_file, head_bytes)
            self.sink.make_durable()
            self._save()
            self._after_file()
            self.files_done += 1
            self.bytes_done += replay_file.path.stat().st_size
            self._progress(self)

    def _events(
        self, replay_file: ReplayFile, key: str, start: int
    ) -> Iterator[tuple[Event, Token]]:
        for event, end in file_pairs(
            replay_file, start, self._access, self._errors, self._multiline, self._max_line_bytes
        ):
            yield self._finish(event), (key, end)

    def _finish(self, event: Event) -> Event:
        self.events += 1
        event.update(self._attributes)
        for observe in self._observers:
            observe(event)
        return event

    def _too_old(self, event: Event) -> bool:
        timestamp = event.get("timestamp")
        if self._oldest_ms is None or timestamp is None or timestamp >= self._oldest_ms:
            return False
        if not self.too_old:
            self._warn(
                "events older than --max-age are not sent to this output (the intake refuses "
                "them); --max-age none sends everything; the summary counts them"
            )
        self.too_old += 1
        return True

    def _acknowledge(self, tokens: list[Token], replay_file: ReplayFile, head: int) -> None:
        for token in tokens:
            key, end = token
            done = self._delivered.get(key)
            if done is None or end > done.offset:
                self._delivered[key] = Checkpoint(key, str(replay_file.path), end, head)

    def _save(self) -> None:
        self.ledger.save(self._delivered.values())


def file_pairs(
    replay_file: ReplayFile,
    start: int,
    access: AccessParser,
    errors: ErrorParser,
    multiline: Callable[[], Multiline[bytes]],
    max_line_bytes: int,
) -> Iterator[tuple[Event, int]]:
    """(event, end offset) of one file from decompressed byte ``start``."""
    path = str(replay_file.path)
    with open_log(replay_file.path) as stream:
        stream.seek(start)  # gzip streams seek forward by decompressing
        if replay_file.kind == "access":
            yield from access_pairs(stream, access, path=path, start=start)
        else:
            yield from error_pairs(
                stream, errors, multiline(), path=path, max_line_bytes=max_line_bytes, start=start
            )


def replay_events(
    access: Iterable[str | Path] = (),
    error: Iterable[str | Path] = (),
    *,
    fmt: str | None = None,
) -> Iterator[Event]:
    """Library use: the events of archived logs, each series oldest first (no ledger; the
    caller delivers them). ``fmt`` is gunicorn's ``access_log_format``."""
    parser, errors = AccessParser(fmt), ErrorParser()
    files = [ReplayFile(path, "access") for path in order_series(map(Path, access))]
    files += [ReplayFile(path, "error") for path in order_series(map(Path, error))]
    for replay_file in files:
        for event, _ in file_pairs(replay_file, 0, parser, errors, Multiline, MAX_LINE_BYTES):
            yield event


def expand(patterns: Iterable[str]) -> list[Path]:
    """Paths for the given names or globs (a shell may have expanded them already)."""
    paths: list[Path] = []
    for pattern in patterns:
        if any(character in pattern for character in "*?["):
            paths += sorted(Path(match) for match in _glob(pattern))
        else:
            paths.append(Path(pattern))
    return paths


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern)
