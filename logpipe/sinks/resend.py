"""Send a state dir's dead letters again (``logpipe resend``), each event once.

The dead-letter file is taken (``dead_letters.take``: renamed to ``RESENDING``, so that what a
follower refuses meanwhile starts a new dead-letter file) and sent in batches through a sink
that keeps what is refused again in the live dead-letter file. After each batch, the offset
reached is stored (``PROGRESS``: written to a temporary file, fsynced, renamed), so a resend
killed part-way goes on from there, and sends again at most the batch that was in flight. Once
the taken file is sent to its end, it is removed, then its progress. A run that finds a taken
file finishes it and takes no other (the live file may hold what it refused again).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from logpipe.problems import SetupError
from logpipe.sinks import Interrupted, LogSink
from logpipe.sinks.datadog_logs import MAX_BYTES, MAX_EVENTS
from logpipe.sinks.dead_letters import DEAD_LETTERS, PROGRESS, RESENDING, sync_directory, take

LOCK = "resend.lock"  # held by the one resend of a state dir


@dataclass
class Resent:
    """What one resend did: events accepted, refused again (now in ``kept_in``), and still
    pending in the taken file (a stop, or the intake unreachable until the deadline)."""

    kept_in: Path
    resumed_at: int  # the offset a killed resend had reached in the taken file (0: none)
    accepted: int = 0
    refused: int = 0
    pending: int = 0
    timed_out: bool = False  # a batch was not taken within ``batch_timeout``

    @property
    def events(self) -> int:
        return self.accepted + self.refused + self.pending


def has_dead_letters(state_dir: Path) -> bool:
    """Whether ``state_dir`` holds dead letters, or a resend's taken file."""
    return (state_dir / DEAD_LETTERS).exists() or (state_dir / RESENDING).exists()


def resend(
    state_dir: Path,
    sink: LogSink,
    *,
    stop: threading.Event,
    warn: Callable[[str], None],
    batch_timeout: float | None = None,
    max_events: int = MAX_EVENTS,
    max_bytes: int = MAX_BYTES,
) -> Resent | None:
    """Send ``state_dir``'s dead letters through ``sink`` (whose own dead letters are the
    live file, and which stops retrying once ``stop`` is set); None when there are none.
    Stops before the next batch once ``stop`` is set, which happens too when a batch is not
    taken within ``batch_timeout`` seconds; ``Interrupted`` from the sink leaves its batch
    pending."""
    live, taken, progress = state_dir / DEAD_LETTERS, state_dir / RESENDING, state_dir / PROGRESS
    with _held(state_dir / LOCK):
        if taken.exists():
            offset = _read_offset(progress)
            warn(f"going on with the resend of {taken} stopped at byte {offset:,}")
        else:
            progress.unlink(missing_ok=True)  # a finished resend's, if it was cut short
            if not take(live, taken, warn):
                return None
            offset = 0
        result = Resent(live, offset)
        before_accepted, before_refused = sink.delivered, _refused(sink)
        with open(taken, "rb") as file:
            file.seek(offset)
            for block, ends in _batches(file, offset, max_events, max_bytes):
                if stop.is_set():
                    break
                tokens = [("", end) for end in ends]
                timer = _expiry(batch_timeout, result, stop)
                try:
                    handled = sink.send_ndjson(block, tokens) + sink.drain()
                except Interrupted as interrupted:
                    handled = interrupted.delivered
                    stop.set()
                finally:
                    if timer is not None:
                        timer.cancel()
                if handled:
                    offset = max(end for _, end in handled)
                    _write_offset(progress, offset)
                if stop.is_set():
                    break
            file.seek(offset)
            result.pending = sum(1 for line in file if line.strip() and line.endswith(b"\n"))
        result.accepted = sink.delivered - before_accepted
        result.refused = _refused(sink) - before_refused
        if not result.pending:
            taken.unlink()
            sync_directory(state_dir)
            progress.unlink(missing_ok=True)
    return result


def _expiry(seconds: float | None, result: Resent, stop: threading.Event) -> threading.Timer | None:
    """A timer that, after ``seconds``, notes the timeout in ``result`` and sets ``stop``."""
    if seconds is None:
        return None

    def expire() -> None:
        result.timed_out = True
        stop.set()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def _refused(sink: LogSink) -> int:
    return sink.stats().get("refused", 0)


def _batches(
    file: BinaryIO, offset: int, max_events: int, max_bytes: int
) -> Iterator[tuple[bytes, list[int]]]:
    """The events from ``offset`` as (NDJSON block, end offset of each event), in batches as
    the sink makes them (at most ``max_events`` and ``max_bytes`` as a JSON array), so that
    each block is one request. Blank lines are skipped; a last line without its newline (a
    writer that is still writing it) is left for later."""
    lines: list[bytes] = []
    ends: list[int] = []
    size = 2  # "[" and "]"
    for line in file:
        offset += len(line)
        if not line.endswith(b"\n"):
            break
        event = line.rstrip(b"\r\n")
        if not event.strip():
            continue
        if lines and (len(lines) >= max_events or size + len(event) + 1 > max_bytes):
            yield b"\n".join(lines) + b"\n", ends
            lines, ends, size = [], [], 2
        lines.append(event)
        ends.append(offset)
        size += len(event) + 1
    if lines:
        yield b"\n".join(lines) + b"\n", ends


def _read_offset(path: Path) -> int:
    """The stored progress (0 when none was stored yet)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as error:
        raise SetupError(f"cannot read {path}: {error}") from None
    if not text.isdigit():
        raise SetupError(
            f"{path} does not hold an offset: {text[:40]!r} (remove it to resend "
            "the taken file from its start)"
        )
    return int(text)


def _write_offset(path: Path, offset: int) -> None:
    """Store ``offset`` durably: a temporary file, fsynced, renamed over ``path``."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{offset}\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    sync_directory(path.parent)


@contextlib.contextmanager
def _held(path: Path) -> Iterator[None]:
    """The resend lock of a state dir, held in the ``with`` block; a second resend of the
    same state dir meanwhile is a ``SetupError``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise SetupError(f"state dir {path.parent}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SetupError(f"another logpipe resend is running in {path.parent}") from None
        yield
    finally:
        os.close(fd)
