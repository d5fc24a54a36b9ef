"""Harness for ``logpipe``'s follow mode: writers, rotations, the process under test, accounting.

* :class:`SequencedWriter` runs ``writer.py`` as a subprocess appending sequence-numbered
  gunicorn-format lines (or error records) at a paced rate; SIGUSR1 reopens its file.
* Rotation helpers act on real files like logrotate and friends do.
* :class:`LogpipeProcess` runs ``python -m logpipe [follow] --access ... --output file:...``.
* :func:`read_events` / :class:`OutputTail` read the NDJSON output; :class:`Accounting` counts
  exactly what was lost, duplicated, reordered or garbled, given what the writers sent.
* :func:`wait_until` / :func:`holds_for` poll with deadlines (no bare sleeps in tests).
* :class:`FollowEnv` ties one test's directories and processes together (fixture ``follow_env``).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import orjson

from tests.follow.writer import access_line, has_traceback, traceback_text

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
WRITER_SCRIPT = HERE / "writer.py"
PYTHON = sys.executable

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0  # SIGTERM -> exit deadline (logpipe's drain must fit in it)
DRAIN_TIMEOUT_S = 20.0  # everything written -> everything in the output
POLL_S = 0.05

T = TypeVar("T")
Key = tuple[str, int]  # (label, seq)
Event = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Polling with deadlines
# --------------------------------------------------------------------------------------------


class WaitTimeout(AssertionError):
    """A :func:`wait_until` deadline passed."""


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = POLL_S, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or raise WaitTimeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"not true after {timeout:.1f}s: {what or predicate!r}")
        time.sleep(interval)


def holds_for(predicate: Callable[[], object], duration: float, interval: float = POLL_S) -> bool:
    """True if ``predicate`` stays truthy for ``duration`` seconds (False at its first failure)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


# --------------------------------------------------------------------------------------------
# What was sent
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """Sequence numbers ``first .. first+count-1`` written under ``label`` to one log."""

    label: str = ""
    first: int = 0
    count: int = 0
    kind: str = "access"  # or "error"
    traceback_every: int = 0
    frames: int = 2
    generations: tuple[int, ...] = ()  # first seq written to each file the writer opened

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, tuple)
            and key[0] == self.label
            and self.first <= key[1] < self.first + self.count
        )

    def sent_keys(self) -> Iterator[Key]:
        return ((self.label, seq) for seq in range(self.first, self.first + self.count))

    def generation(self, seq: int) -> int:
        """Index of the file (writer open) that ``seq`` was written to."""
        return max(bisect.bisect_right(self.generations, seq) - 1, 0)

    def expected_body(self, seq: int) -> list[str]:
        """Lines an error record must hold after its first line."""
        if self.kind == "error" and has_traceback(seq, self.traceback_every):
            return traceback_text(seq, self.frames).split("\n")
        return []


# --------------------------------------------------------------------------------------------
# Writer subprocess
# --------------------------------------------------------------------------------------------


class Reopener(Protocol):
    """Something that reopens its log file on request (a writer, a gunicorn master)."""

    def request_reopen(self) -> None: ...


class SequencedWriter:
    """``writer.py`` as a subprocess; see its docstring for the line formats and protocol."""

    def __init__(
        self,
        path: Path,
        *,
        kind: str = "access",
        rate: float = 5000.0,
        count: int | None = None,
        duration: float = 1.0,
        burst: int = 25,
        start: int = 0,
        label: str = "",
        reopen_delay: float = 0.0,
        traceback_every: int = 0,
        frames: int = 2,
    ) -> None:
        self.path = Path(path)
        self.argv = [PYTHON, str(WRITER_SCRIPT), str(path), "--kind", kind, "--rate", str(rate)]
        self.argv += ["--duration", str(duration), "--burst", str(burst), "--start", str(start)]
        self.argv += ["--label", label, "--reopen-delay", str(reopen_delay)]
        self.argv += ["--traceback-every", str(traceback_every), "--frames", str(frames)]
        if count is not None:
            self.argv += ["--count", str(count)]
        self.proc: subprocess.Popen[str] | None = None
        self.inode = 0
        self.written = 0  # lower bound while running, exact once done
        self.reopens = 0
        self.report: dict[str, Any] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> Self:
        """Start the process and wait until it has opened its file."""
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        wait_until(lambda: self.inode or not self.running, timeout, what="writer ready")
        if not self.inode:
            code = self.proc.wait()
            raise AssertionError(f"writer exited {code} before opening its file: {self.stderr()}")
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "ready":
                self.inode = int(rest)
            elif word == "progress":
                self.written = int(rest)
            elif word == "reopened":
                written, inode = rest.split()
                self.written, self.inode = int(written), int(inode)
                self.reopens += 1
            elif word == "done":
                self.report = orjson.loads(rest)
                self.written = self.report["count"]

    @property
    def pid(self) -> int:
        assert self.proc is not None, "writer not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request_reopen(self) -> None:
        """SIGUSR1: reopen the file by path (after the configured delay)."""
        os.kill(self.pid, signal.SIGUSR1)

    def wait_written(self, count: int, timeout: float = DRAIN_TIMEOUT_S) -> None:
        wait_until(lambda: self.written >= count, timeout, what=f"writer wrote {count}")

    def wait_reopens(self, count: int, timeout: float = START_TIMEOUT_S) -> None:
        wait_until(lambda: self.reopens >= count, timeout, what=f"writer reopened {count}x")

    def wait(self, timeout: float = 60.0) -> Stream:
        """Wait for the writer to finish; what it sent."""
        assert self.proc is not None and self._reader is not None
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        if code != 0 or self.report is None:
            raise AssertionError(f"writer exited {code}: {self.stderr()}")
        return self.stream()

    def stop(self, timeout: float = START_TIMEOUT_S) -> Stream:
        """SIGTERM (the current burst is finished), then :meth:`wait`."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        return self.wait(timeout)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()  # type: ignore[union-attr]
            self.proc.wait()  # type: ignore[union-attr]

    def stderr(self) -> str:
        if self.proc is None or self.proc.stderr is None or self.running:
            return ""
        return self.proc.stderr.read()

    def stream(self) -> Stream:
        """The sent sequence numbers, from the final report."""
        if self.report is None:
            raise AssertionError("writer has not reported (still running or killed)")
        r = self.report
        return Stream(
            label=r["label"],
            first=r["first"],
            count=r["count"],
            kind=r["kind"],
            traceback_every=r["traceback_every"],
            frames=r["frames"],
            generations=tuple(r["generations"]),
        )

    @property
    def rate(self) -> float:
        """Measured lines (records) per second."""
        assert self.report is not None
        return float(self.report["count"]) / max(float(self.report["elapsed"]), 1e-9)


# --------------------------------------------------------------------------------------------
# Files: direct writes and rotations
# --------------------------------------------------------------------------------------------


def append(path: Path, data: bytes) -> None:
    """One O_APPEND write of ``data`` (creating the file)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def append_paced(path: Path, pieces: Iterable[bytes], gap: float) -> None:
    """Append each piece with its own write, ``gap`` seconds apart (a slow writer's pacing)."""
    for n, piece in enumerate(pieces):
        if n:
            time.sleep(gap)
        append(path, piece)


def create_empty(path: Path) -> int:
    """Create ``path`` empty (it must not exist); its inode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def rotated_name(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def shift_rotated(path: Path, keep: int = 9) -> Path:
    """Move ``path.N`` to ``path.N+1`` (highest first, dropping ``path.keep``); ``path.1``."""
    rotated_name(path, keep).unlink(missing_ok=True)
    for n in range(keep - 1, 0, -1):
        if rotated_name(path, n).exists():
            os.rename(rotated_name(path, n), rotated_name(path, n + 1))
    return rotated_name(path, 1)


@dataclass(frozen=True)
class Rotation:
    """What a rotation helper did."""

    path: Path
    rotated: Path | None  # where the old content is now
    old_inode: int
    new_inode: int
    copied: int = 0  # copytruncate: bytes in the copy
    size_at_truncate: int = 0  # copytruncate: size seen just before truncating

    @property
    def inode_reused(self) -> bool:
        return self.old_inode == self.new_inode


def rotate_rename(path: Path, reopener: Reopener | None = None, keep: int = 9) -> Rotation:
    """logrotate ``create``: rename to ``path.1`` (shifting older ones), create an empty
    ``path``, then ask the writer to reopen (SIGUSR1 for gunicorn)."""
    old_inode = path.stat().st_ino
    first = shift_rotated(path, keep)
    os.rename(path, first)
    new_inode = create_empty(path)
    if reopener is not None:
        reopener.request_reopen()
    return Rotation(path, first, old_inode, new_inode)


def rotate_copytruncate(path: Path, keep: int = 9) -> Rotation:
    """logrotate ``copytruncate``: copy to ``path.1``, then truncate in place (no signal).
    Lines appended between the end of the copy and the truncation are lost for everyone."""
    first = shift_rotated(path, keep)
    with open(path, "rb") as src, open(first, "wb") as dst:
        shutil.copyfileobj(src, dst)
        copied = dst.tell()
    size = path.stat().st_size
    os.truncate(path, 0)
    inode = path.stat().st_ino
    return Rotation(path, first, inode, inode, copied=copied, size_at_truncate=size)


def truncate(path: Path) -> int:
    """Truncate ``path`` to 0 in place; the size it had."""
    size = path.stat().st_size
    os.truncate(path, 0)
    return size


def fd_inodes(pid: int) -> set[tuple[int, int]]:
    """(device, inode) of every file process ``pid`` holds open (deleted ones included)."""
    found: set[tuple[int, int]] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return found
    for name in names:
        try:
            st = os.stat(fd_dir / name)
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def wait_released(pids: Iterable[int], dev_ino: tuple[int, int], timeout: float) -> bool:
    """Wait until none of ``pids`` holds the file ``dev_ino`` open; whether that happened."""
    pids = list(pids)
    try:
        wait_until(lambda: all(dev_ino not in fd_inodes(p) for p in pids), timeout)
    except WaitTimeout:
        return False
    return True


def delete_and_recreate(
    path: Path,
    reopener: Reopener | None = None,
    *,
    same_inode: bool = False,
    holders: Iterable[int] = (),
    release_timeout: float = 10.0,
) -> Rotation:
    """Unlink ``path`` and create it again empty, then ask ``reopener`` to reopen.

    ``same_inode``: first wait (up to ``release_timeout``) until none of the ``holders`` pids
    holds the old file open (an inode is freed only with its last fd), then create with
    :func:`create_reusing`. Check :attr:`Rotation.inode_reused` for what happened."""
    st = path.stat()
    path.unlink()
    if same_inode:
        wait_released(holders, (st.st_dev, st.st_ino), release_timeout)
        new_inode = create_reusing(path, st.st_ino)
    else:
        new_inode = create_empty(path)
    if reopener is not None:
        reopener.request_reopen()
    return Rotation(path, None, st.st_ino, new_inode)


def create_reusing(path: Path, inode: int, max_fillers: int = 256) -> int:
    """Create ``path`` empty, trying to get the freed ``inode`` back; the inode it got.

    ext4 gives a new file the lowest free inode of its directory's block group, so a lower
    hole left by some other deleted file wins over ``inode``: such holes are filled with
    temporary files (removed afterwards) until ``inode`` comes up or a higher one does."""
    fillers: list[Path] = []
    try:
        for n in range(max_fillers):
            got = create_empty(path)
            if got >= inode:
                return got
            filler = path.with_name(f".{path.name}.filler-{n}")
            os.rename(path, filler)
            fillers.append(filler)
        return create_empty(path)
    finally:
        for filler in fillers:
            filler.unlink()


def swap_symlink(link: Path, new_target: Path) -> Path | None:
    """Point ``link`` at ``new_target`` atomically (symlink + rename); the previous target."""
    previous = Path(os.readlink(link)) if link.is_symlink() else None
    tmp = link.with_name(f".{link.name}.swap-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(new_target, tmp)
    os.replace(tmp, link)
    return previous


# --------------------------------------------------------------------------------------------
# Output and accounting
# --------------------------------------------------------------------------------------------

LABEL = r"[\w.-]+"
ACCESS_KEY = re.compile(rf'"GET /seq/(?:({LABEL})/)?(\d+)[ ?]')
ACCESS_LINE = re.compile(
    r"127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
    rf'"GET /seq/(?:{LABEL}/)?\d+ HTTP/1\.1" 200 \d+ "-" "[^"]*"'
)
ERROR_START = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[ERROR\] "
    rf"seq (?:({LABEL})/)?(\d+)$",
    re.MULTILINE,
)


def read_events(*paths: Path, strict: bool = False) -> list[Event]:
    """Events of NDJSON files, in order. A last line without ``\\n`` (still being written) is
    skipped, or an error when ``strict`` (the writer has exited)."""
    events: list[Event] = []
    for path in paths:
        if not path.exists():
            continue
        data = path.read_bytes()
        complete, _, partial = data.rpartition(b"\n")
        if partial and strict:
            raise ValueError(f"{path}: unterminated last line {partial[:80]!r}")
        events.extend(orjson.loads(line) for line in complete.split(b"\n") if line)
    return events


class OutputTail:
    """Incremental :func:`read_events` over files that only grow (complete lines only)."""

    def __init__(self) -> None:
        self.offsets: dict[Path, int] = {}
        self.events: list[Event] = []

    def poll(self, paths: Iterable[Path]) -> list[Event]:
        """Read what was appended since the last call; all events so far."""
        for path in paths:
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            self.events.extend(orjson.loads(line) for line in complete.split(b"\n") if line)
        return self.events


def event_field(event: Event, dotted: str) -> Any:
    """``event_field(e, "logpipe.path")``: nested (``{"logpipe": {"path"}}``) or flat key."""
    if dotted in event:
        return event[dotted]
    value: Any = event
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def message_keys(message: str) -> tuple[str, list[Key]]:
    """("access"|"error"|"", keys found in the message, first one first)."""
    starts = [(m.group(1) or "", int(m.group(2))) for m in ERROR_START.finditer(message)]
    if starts:
        return "error", starts
    found = [(m.group(1) or "", int(m.group(2))) for m in ACCESS_KEY.finditer(message)]
    return ("access" if found else ""), found


def keys_in_files(paths: Iterable[Path]) -> Counter[Key]:
    """How often each key occurs in the given log files (those that exist)."""
    found: Counter[Key] = Counter()
    for path in paths:
        if path.exists():
            found.update(message_keys(path.read_bytes().decode("utf-8", "replace"))[1])
    return found


@dataclass
class Accounting:
    """Exact delivery accounting of output events against what the writers sent."""

    streams: list[Stream]
    seen: Counter[Key] = field(default_factory=Counter)
    order_violations: list[tuple[Key, int]] = field(default_factory=list)  # (key, max before)
    malformed: list[tuple[Key, str]] = field(default_factory=list)
    unparsed: list[str] = field(default_factory=list)
    events: int = 0
    _last: dict[tuple[str, int, int], int] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, events: Iterable[Event], streams: Iterable[Stream]) -> Accounting:
        acc = cls(list(streams))
        for event in events:
            acc.add(event)
        return acc

    def stream_of(self, key: Key) -> tuple[int, Stream] | None:
        for index, stream in enumerate(self.streams):
            if key in stream:
                return index, stream
        return None

    def add(self, event: Event) -> None:
        """Count one output event."""
        self.events += 1
        message = str(event.get("message", ""))
        kind, keys = message_keys(message)
        if not keys:
            self.unparsed.append(message[:200])
            return
        key = keys[0]
        self.seen[key] += 1
        if len(keys) > 1:
            self.malformed.append((key, f"joined with {keys[1:4]}"))
        found = self.stream_of(key)
        if found is None:
            return
        index, stream = found
        problem = self._shape_problem(kind, key, message, stream)
        if problem:
            self.malformed.append((key, problem))
        if self.seen[key] == 1:
            self._check_order(key, (key[0], index, stream.generation(key[1])))

    def _shape_problem(self, kind: str, key: Key, message: str, stream: Stream) -> str:
        if kind != stream.kind:
            return f"{kind} message for an {stream.kind} stream"
        if kind == "access":
            return "" if ACCESS_LINE.fullmatch(message) else f"bad access line {message[:120]!r}"
        lines = message.split("\n")
        if not ERROR_START.fullmatch(lines[0]):
            return f"record starts with {lines[0][:80]!r}"
        body = stream.expected_body(key[1])
        if lines[1:] != body:
            return f"record body of {len(lines) - 1} lines, expected {len(body)}"
        return ""

    def _check_order(self, key: Key, file_id: tuple[str, int, int]) -> None:
        last = self._last.get(file_id, -1)
        if key[1] < last:
            self.order_violations.append((key, last))
        self._last[file_id] = max(last, key[1])

    @property
    def sent(self) -> int:
        return sum(stream.count for stream in self.streams)

    @property
    def lost(self) -> list[Key]:
        """Sent but never seen."""
        return [
            key for stream in self.streams for key in stream.sent_keys() if key not in self.seen
        ]

    @property
    def duplicated(self) -> int:
        """Extra copies: each key seen n > 1 times counts n - 1."""
        return sum(n - 1 for n in self.seen.values() if n > 1)

    @property
    def duplicated_keys(self) -> list[Key]:
        return sorted(key for key, n in self.seen.items() if n > 1)

    @property
    def unexpected(self) -> list[Key]:
        """Seen but never sent."""
        return sorted(key for key in self.seen if self.stream_of(key) is None)

    def clean(self) -> bool:
        """No loss, duplicate, per-file reordering, garbled message or unknown key."""
        return not (
            self.lost
            or self.duplicated
            or self.order_violations
            or self.malformed
            or self.unexpected
        )

    def summary(self) -> str:
        lost, dups = self.lost, self.duplicated_keys
        return (
            f"sent={self.sent} events={self.events} distinct={len(self.seen)} "
            f"lost={len(lost)} {_ranges(lost)} duplicated={self.duplicated} {_ranges(dups)} "
            f"order_violations={len(self.order_violations)} {self.order_violations[:5]} "
            f"malformed={len(self.malformed)} {self.malformed[:3]} "
            f"unexpected={len(self.unexpected)} {self.unexpected[:5]} "
            f"unparsed={len(self.unparsed)} {self.unparsed[:3]}"
        )


def _ranges(keys: Sequence[Key], limit: int = 8) -> str:
    """``[a:0-99, a:150]``: sorted keys as runs, for messages."""
    runs: list[list[Any]] = []
    for label, seq in sorted(keys):
        if runs and runs[-1][0] == label and runs[-1][2] == seq - 1:
            runs[-1][2] = seq
        else:
            runs.append([label, seq, seq])
    shown = [f"{lb}:{a}" if a == b else f"{lb}:{a}-{b}" for lb, a, b in runs[:limit]]
    more = f" +{len(runs) - limit} runs" if len(runs) > limit else ""
    return "[" + ", ".join(shown) + more + "]"


# --------------------------------------------------------------------------------------------
# logpipe follow
# --------------------------------------------------------------------------------------------


FOLLOW_COMMAND_ENV = "LOGPIPE_FOLLOW_COMMAND"  # e.g. "logpipe follow": overrides the detection


@functools.cache
def follow_command() -> tuple[str, ...] | None:
    """argv prefix of the follow command: ``$LOGPIPE_FOLLOW_COMMAND`` if set, else
    ``python -m logpipe`` (or ``... follow``) when its ``--help`` mentions ``--access``;
    None while follow mode does not exist."""
    if os.environ.get(FOLLOW_COMMAND_ENV):
        return tuple(shlex.split(os.environ[FOLLOW_COMMAND_ENV]))
    for sub in ((), ("follow",)):
        argv = (PYTHON, "-m", "logpipe", *sub)
        try:
            done = subprocess.run(
                [*argv, "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if "--access" in done.stdout:
            return argv
    return None


def follow_available() -> bool:
    return follow_command() is not None


class LogpipeProcess:
    """The follow command as a subprocess; stderr captured to a file."""

    def __init__(
        self,
        *,
        access: Sequence[Path] = (),
        error: Sequence[Path] = (),
        state_dir: Path,
        output: Path,
        stderr_path: Path,
        start_at: str = "beginning",
        extra_args: Sequence[str] = (),
        nofile: int | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        """``command`` replaces the argv prefix (default: :func:`follow_command`)."""
        prefix = command or follow_command() or (PYTHON, "-m", "logpipe")
        self.argv = [*prefix]
        for path in access:
            self.argv += ["--access", str(path)]
        for path in error:
            self.argv += ["--error", str(path)]
        self.argv += ["--state-dir", str(state_dir), "--output", f"file:{output}"]
        self.argv += ["--start-at", start_at, *extra_args]
        self.output = output
        self.stderr_path = stderr_path
        self.nofile = nofile
        self.proc: subprocess.Popen[bytes] | None = None

    def _limits(self) -> None:
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self) -> Self:
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=REPO_ROOT,
                preexec_fn=self._limits if self.nofile is not None else None,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "logpipe not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def handles(self, sig: int) -> bool:
        """Whether the process has a handler of its own for ``sig`` (SigCgt in /proc). An
        ignored signal (SigIgn) does not count: it may be inherited (under ``nohup``, SIGHUP
        is ignored from the start, before logpipe sets its handler)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return False
        masks = re.findall(r"^SigCgt:\s+([0-9a-f]+)", status, re.MULTILINE)
        return any(int(mask, 16) >> (sig - 1) & 1 for mask in masks)

    def stop(self, timeout: float = STOP_TIMEOUT_S, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit; past ``timeout`` SIGKILL it and fail.

        A process just started may not handle ``sig`` yet (Python still importing): wait up
        to START_TIMEOUT_S for its handler first, so a quick stop is not a plain kill."""
        assert self.proc is not None
        if self.running:
            with contextlib.suppress(WaitTimeout):  # no handler at all: the exit status tells
                wait_until(lambda: self.handles(sig) or not self.running, START_TIMEOUT_S)
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"logpipe did not exit {timeout}s after signal {sig}: {self.stderr_tail()}"
            ) from None

    def kill(self) -> int:
        """SIGKILL (no drain, no final checkpoint)."""
        assert self.proc is not None
        if self.running:
            self.proc.kill()
        return self.proc.wait()

    def stderr_text(self) -> str:
        if not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def stderr_tail(self, size: int = 3000) -> str:
        return self.stderr_text()[-size:]

    def peak_rss_kib(self) -> int:
        """VmHWM from /proc (0 once exited)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) if match else 0

    def open_paths(self) -> list[str]:
        """Targets of /proc/PID/fd (a deleted file shows as ``... (deleted)``)."""
        fd_dir = Path(f"/proc/{self.pid}/fd")
        paths = []
        for name in os.listdir(fd_dir):
            try:
                paths.append(os.readlink(fd_dir / name))
            except OSError:
                continue
        return paths


# --------------------------------------------------------------------------------------------
# Real gunicorn
# --------------------------------------------------------------------------------------------


class GunicornServer:
    """gunicorn (sync workers) serving ``seq_app`` with access and error logs to files."""

    def __init__(self, access_log: Path, error_log: Path, workers: int = 2) -> None:
        self.access_log, self.error_log, self.workers = access_log, error_log, workers
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Self:
        argv = [PYTHON, "-m", "gunicorn", "--chdir", str(HERE), "--bind", f"127.0.0.1:{self.port}"]
        argv += ["--workers", str(self.workers), "--worker-class", "sync", "--no-control-socket"]
        argv += ["--access-logfile", str(self.access_log), "--error-logfile", str(self.error_log)]
        env = {k: v for k, v in os.environ.items() if k not in ("GUNICORN_CMD_ARGS", "PYTHONPATH")}
        env["TZ"] = "UTC"
        self.proc = subprocess.Popen(
            [*argv, "seq_app:app"], env=env, stdin=subprocess.DEVNULL, cwd=HERE
        )
        wait_until(self._booted, timeout, interval=0.1, what="gunicorn workers booted")
        return self

    def _booted(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited {self.proc.returncode}")
        text = self.error_log.read_text() if self.error_log.exists() else ""
        return text.count("Booting worker") >= self.workers

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def request_reopen(self) -> None:
        """SIGUSR1 to the master: it reopens, then signals every worker to reopen."""
        os.kill(self.pid, signal.SIGUSR1)

    def get(self, target: str, timeout: float = 5.0, user_agent: str | None = None) -> int:
        """One ``GET target`` on its own connection; the status code."""
        agent = f"User-Agent: {user_agent}\r\n" if user_agent else ""
        head = f"GET {target} HTTP/1.1\r\nHost: t\r\n{agent}Connection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(head.encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1])

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class RequestLoop(threading.Thread):
    """Background client: ``GET /seq/<n>`` for ``count`` sequence numbers, one at a time,
    paced to ``rate`` requests/s. ``sent`` counts the 200 answers."""

    def __init__(self, server: GunicornServer, count: int, rate: float, label: str = "") -> None:
        super().__init__(daemon=True)
        self.server, self.count, self.rate, self.label = server, count, rate, label
        self.sent = 0
        self.errors: list[str] = []

    def run(self) -> None:
        start = time.monotonic()
        prefix = f"/seq/{self.label}/" if self.label else "/seq/"
        for seq in range(self.count):
            pause = start + seq / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                status = self.server.get(f"{prefix}{seq}")
            except OSError as error:
                self.errors.append(f"{seq}: {error}")
                return
            if status != 200:
                self.errors.append(f"{seq}: status {status}")
                return
            self.sent += 1

    def wait_sent(self, count: int, timeout: float = DRAIN_TIMEOUT_S) -> None:
        wait_until(lambda: self.sent >= count or not self.is_alive(), timeout)
        assert self.sent >= count, f"client stopped at {self.sent}: {self.errors}"

    def stream(self) -> Stream:
        return Stream(label=self.label, first=0, count=self.sent)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# One test's world
# --------------------------------------------------------------------------------------------


class FollowEnv:
    """Directories, processes and output of one test; :meth:`close` kills what is left."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.state = root / "state"
        self.out = root / "out"
        for directory in (self.logs, self.state, self.out):
            directory.mkdir(parents=True, exist_ok=True)
        self.writers: list[SequencedWriter] = []
        self.runs: list[LogpipeProcess] = []
        self.servers: list[GunicornServer] = []
        self.tail = OutputTail()

    def log(self, name: str) -> Path:
        return self.logs / name

    def writer(self, path: Path, **options: Any) -> SequencedWriter:
        """Start a :class:`SequencedWriter` (options as its constructor's)."""
        writer = SequencedWriter(path, **options)
        self.writers.append(writer)
        return writer.start()

    def logpipe(
        self,
        access: Sequence[Path] = (),
        error: Sequence[Path] = (),
        state_dir: Path | None = None,
        **options: Any,
    ) -> LogpipeProcess:
        """Start the follow command (``--state-dir`` default: ``state/``); each run writes its
        own ``out/run-N.ndjson``."""
        n = len(self.runs) + 1
        run = LogpipeProcess(
            access=access,
            error=error,
            state_dir=state_dir or self.state,
            output=self.out / f"run-{n}.ndjson",
            stderr_path=self.out / f"run-{n}.stderr",
            **options,
        )
        self.runs.append(run)
        return run.start()

    def gunicorn(self, access_log: Path, error_log: Path, workers: int = 2) -> GunicornServer:
        server = GunicornServer(access_log, error_log, workers)
        self.servers.append(server)
        return server.start()

    @property
    def outputs(self) -> list[Path]:
        return [run.output for run in self.runs]

    def events(self) -> list[Event]:
        """All output events so far, run after run."""
        return self.tail.poll(self.outputs)

    def account(self, streams: Iterable[Stream]) -> Accounting:
        return Accounting.of(self.events(), streams)

    def check_alive(self) -> None:
        """Fail at once (with its stderr) if the current logpipe run has exited."""
        if self.runs and self.runs[-1].returncode is not None:
            run = self.runs[-1]
            raise AssertionError(f"logpipe exited {run.returncode}: {run.stderr_tail()}")

    def wait_shipped(
        self,
        streams: Iterable[Stream],
        timeout: float = DRAIN_TIMEOUT_S,
        allowed_lost: Iterable[Key] = (),
    ) -> Accounting:
        """Wait until every sent key (but ``allowed_lost``) is in the output."""
        streams, allowed = list(streams), set(allowed_lost)

        def shipped() -> Accounting | None:
            self.check_alive()
            acc = self.account(streams)
            return acc if set(acc.lost) <= allowed else None

        try:
            acc = wait_until(shipped, timeout, interval=0.2)
            assert acc is not None
            return acc
        except WaitTimeout:
            acc = self.account(streams)
            message = f"not shipped in {timeout}s: {acc.summary()}\n{self.diagnostics()}"
            raise AssertionError(message) from None

    def finish(self, streams: Iterable[Stream], allowed_lost: Iterable[Key] = ()) -> Accounting:
        """Wait until shipped, stop the current run (SIGTERM, must exit 0), account all runs."""
        streams = list(streams)
        self.wait_shipped(streams, allowed_lost=allowed_lost)
        code = self.runs[-1].stop()
        assert code == 0, f"logpipe exited {code} on SIGTERM\n{self.diagnostics()}"
        return self.final_account(streams)

    def final_account(self, streams: Iterable[Stream]) -> Accounting:
        """Accounting of every run's whole output; a run that exited 0 must not have left a
        partial last line (a SIGKILLed one may)."""
        events: list[Event] = []
        for run in self.runs:
            assert not run.running, "final_account with logpipe still running"
            events += read_events(run.output, strict=run.returncode == 0)
        return Accounting.of(events, streams)

    def wait_following(self, probe: Path, label: str = "probe", timeout: float = 20.0) -> None:
        """Prove the current run follows ``probe`` (even with ``--start-at end``): append
        ``GET /seq/<label>/<n>`` lines until one shows up in the output."""
        sent = 0

        def seen() -> bool:
            nonlocal sent
            self.check_alive()
            if any(key[0] == label for key in self.account([]).seen):
                return True
            append(probe, access_line(sent, label))
            sent += 1
            return False

        wait_until(seen, timeout, interval=0.2, what=f"logpipe following {probe}")

    def diagnostics(self) -> str:
        """Exit codes and stderr tails of every logpipe run."""
        parts = []
        for n, run in enumerate(self.runs, 1):
            parts.append(f"--- run {n} (exit {run.returncode}) stderr ---\n{run.stderr_tail(1500)}")
        return "\n".join(parts)

    def close(self) -> None:
        for run in self.runs:
            if run.running:
                run.kill()
        for writer in self.writers:
            writer.kill()
        for server in self.servers:
            server.stop()
