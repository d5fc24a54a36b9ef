"""Writes that fail (a full disk, a read-only state dir), in process: output files keep whole
events only, follow mode pauses reading and retries, and the Datadog sink gives up at the
shutdown deadline. No processes, no sockets: failures are injected."""

from __future__ import annotations

import errno
import gzip
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from logpipe import AccessParser, ErrorParser
from logpipe.checkpoints import CheckpointStore
from logpipe.pipeline.follow_loop import FollowPipeline
from logpipe.pipeline.outage import Outage
from logpipe.sinks import Interrupted
from logpipe.sinks import append as append_module
from logpipe.sinks.append import AppendFile, cut_torn_tail
from logpipe.sinks.datadog_logs import DatadogLogsSink
from logpipe.sinks.ndjson import NdjsonSink, NdjsonWriter
from logpipe.sources.follower import Follower, FollowSpec

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def line(n: int) -> bytes:
    text = f'127.0.0.1 - - [25/Nov/2026:04:22:59 +0000] "GET /seq/{n} HTTP/1.1" 200 5 "-" "t"\n'
    return text.encode()


def seqs(path: Path) -> list[int]:
    """The sequence numbers of an NDJSON output, every line a whole JSON object."""
    events = [orjson.loads(text) for text in path.read_bytes().split(b"\n")[:-1]]
    return [int(event["http"]["url"].rsplit("/", 1)[1]) for event in events]


class Disk:
    """``os.write`` for AppendFile that fails once ``room`` bytes were written (a full disk),
    after writing what still fits, as a real full disk does."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        size = min(len(data), self.room)
        self.room -= size
        return os.write(fd, bytes(data[:size]))


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    full = Disk(room=1 << 40)

    class FakeOs:
        def __getattr__(self, name: str) -> object:
            return full.write if name == "write" else getattr(os, name)

    monkeypatch.setattr(append_module, "os", FakeOs())
    yield full


# -- whole lines in output files ---------------------------------------------------------------


def test_opening_cuts_a_torn_last_event_and_says_so(tmp_path: Path) -> None:
    target = tmp_path / "events.ndjson"
    target.write_bytes(b'{"n":1}\n{"n":2}\n{"n":')
    said: list[str] = []
    file = AppendFile.open(str(target), said.append)
    file.write(b'{"n":3}\n')
    file.close()
    assert target.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'
    assert said == [
        f"{target} ended in 5 bytes of an event cut short (a crash or a full disk mid-write): "
        "cut them off; that event is sent again"
    ]


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b"", b""),
        (b'{"n":1}\n', b'{"n":1}\n'),
        (b'{"n":', b""),  # no newline at all
        (b'{"n":1}\n' + b"x" * 200_000, b'{"n":1}\n'),  # the newline lies pieces back
    ],
)
def test_cut_torn_tail(tmp_path: Path, content: bytes, kept: bytes) -> None:
    target = tmp_path / "events.ndjson"
    target.write_bytes(content)
    fd = os.open(target, os.O_RDWR)
    try:
        assert cut_torn_tail(fd) == len(content) - len(kept)
    finally:
        os.close(fd)
    assert target.read_bytes() == kept


def test_a_failed_write_is_undone(tmp_path: Path, disk: Disk) -> None:
    target = tmp_path / "events.ndjson"
    file = AppendFile.open(str(target), print)
    file.write(b'{"n":1}\n')
    disk.room = 5  # part of the next write fits, then the disk is full
    with pytest.raises(OSError, match="No space left") as raised:
        file.write(b'{"n":2}\n{"n":3}\n')
    assert raised.value.filename == str(target)
    assert target.read_bytes() == b'{"n":1}\n'  # cut back to where the write began
    disk.room = 1 << 40
    file.write(b'{"n":2}\n{"n":3}\n')
    file.close()
    assert target.read_bytes() == b'{"n":1}\n{"n":2}\n{"n":3}\n'


def test_a_sink_holds_what_it_could_not_write_and_writes_it_whole_later(
    tmp_path: Path, disk: Disk
) -> None:
    target = tmp_path / "events.ndjson"
    sink = NdjsonSink.to_file(str(target), print)
    disk.room = 0
    sink.send(iter([({"n": n}, n) for n in range(3)]), "a", 3)
    with pytest.raises(OSError, match="No space left"):
        sink.tick()
    with pytest.raises(OSError, match="No space left"):
        sink.sync_job()  # no sync job (and so no checkpoint) past what was not written
    assert target.read_bytes() == b""
    disk.room = 1 << 40
    sink.tick()
    sink.sync_job()()
    sink.close()
    assert [orjson.loads(text) for text in target.read_bytes().splitlines()] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_a_held_buffer_goes_out_in_pieces_of_whole_events(tmp_path: Path, disk: Disk) -> None:
    """After an outage the buffer can be larger than the room the disk has again: whole pieces
    go out as room allows, none torn."""
    target = tmp_path / "events.ndjson"
    file = AppendFile.open(str(target), print)
    writer = NdjsonWriter(file, flush_bytes=100, hold=True)
    disk.room = 0
    writer.write_all({"n": n, "pad": "x" * 20} for n in range(40))  # ~1.3 KB, held
    disk.room = 500
    with pytest.raises(OSError):
        writer.flush()
    written = target.read_bytes()
    assert 0 < len(written) <= 500 and written.endswith(b"\n")
    disk.room = 1 << 40
    writer.flush()
    file.close()
    assert [orjson.loads(text)["n"] for text in target.read_bytes().splitlines()] == [*range(40)]


# -- the outage policy -------------------------------------------------------------------------


def test_an_outage_is_said_once_retried_with_backoff_and_its_end_said() -> None:
    said: list[str] = []
    outage = Outage(said.append)
    error = OSError(errno.ENOSPC, "No space left on device", "/out/events.ndjson")
    retries = []
    now = 0.0
    for _ in range(8):
        outage.failed(error, now)
        retries.append(outage.wait(now))
        now += outage.wait(now)
        assert outage.due(now)
    assert retries == [1, 2, 4, 8, 16, 30, 30, 30]
    state = OSError(errno.EROFS, "Read-only file system", "/state/checkpoints.json.tmp")
    outage.failed(state, now)
    outage.ended(now + 2)
    assert said == [
        "cannot write /out/events.ndjson: No space left on device; reading paused, retrying in 1 s",
        "cannot write /state/checkpoints.json.tmp: Read-only file system; reading paused, "
        "retrying in 30 s",
        "writing again after 123 s; reading resumed",
    ]
    assert not outage.active and outage.due(now)


def test_errors_that_cannot_pass_are_raised() -> None:
    outage = Outage(print)
    with pytest.raises(OSError, match="Bad file descriptor"):
        outage.failed(OSError(errno.EBADF, "Bad file descriptor"), 0.0)
    assert not outage.active


# -- follow mode in an outage ------------------------------------------------------------------


class FlakyStream:
    """An output whose writes fail while ``full`` is set (a full disk), else go to a list."""

    def __init__(self) -> None:
        self.full = False
        self.data = bytearray()

    def write(self, data: bytes | memoryview, /) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device", "/out/events.ndjson")
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return 0  # never synced: a stream that is not a regular file

    def tell(self) -> int:
        return len(self.data)


class StepClock:
    """A clock that a waiting follow loop moves on by the time it waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Steps:
    """Stands in for the waker: each wait lets the checkpoint under way finish, moves the
    clock, then runs the step planned for that wait (the test's actions), and stops the loop
    after the last one."""

    def __init__(
        self, clock: StepClock, stop: threading.Event, steps: dict[int, Callable[[], None]]
    ) -> None:
        self.clock, self.stop, self.steps = clock, stop, steps
        self.waits = 0
        self.pipeline: FollowPipeline | None = None

    def wait(self, timeout: float) -> None:
        self._settle()
        self.clock.now += max(timeout, 0.25)
        self.waits += 1
        self.steps.get(self.waits, lambda: None)()
        if self.waits >= max(self.steps):
            self.stop.set()

    def _settle(self) -> None:
        running = self.pipeline._checkpointing._running if self.pipeline else None
        deadline = time.monotonic() + 10
        while running is not None and not running.done():
            assert time.monotonic() < deadline, "a checkpoint job hangs"
            time.sleep(0.001)


def pipeline_for(
    tail: Follower, stream: FlakyStream, steps: Steps, clock: StepClock, said: list[str]
) -> FollowPipeline:
    pipeline = FollowPipeline(
        tail,
        NdjsonSink(stream, fsync=False),
        access=AccessParser(),
        errors=ErrorParser(),
        waker=steps,  # type: ignore[arg-type]
        clock=clock,
        report=said.append,
    )
    steps.pipeline = pipeline
    return pipeline


def add_lines(log: Path, numbers: range) -> Callable[[], None]:
    def append() -> None:
        with log.open("ab") as file:
            file.write(b"".join(line(n) for n in numbers))

    return append


def test_follow_pauses_reading_while_the_output_is_full_and_loses_nothing(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(n) for n in range(5)))
    store = CheckpointStore(tmp_path / "state", on_problem=print)
    clock, stop, said = StepClock(), threading.Event(), []
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning", clock=clock)
    stream = FlakyStream()
    stream.full = True

    def space_again() -> None:
        stream.full = False

    steps = Steps(
        clock,
        stop,
        {
            2: add_lines(log, range(5, 10)),
            4: add_lines(log, range(10, 15)),
            6: space_again,
            12: lambda: None,
        },
    )
    pipeline = pipeline_for(tail, stream, steps, clock, said)
    polled_in_outage = []
    poll = tail.poll

    def watched_poll() -> list[object]:
        polled_in_outage.append(pipeline._outage.active)
        return poll()  # type: ignore[return-value]

    tail.poll = watched_poll  # type: ignore[method-assign,assignment]
    pipeline.run(stop)
    written = [
        int(orjson.loads(text)["http"]["url"].rsplit("/", 1)[1])
        for text in stream.data.splitlines()
    ]
    assert written == [*range(15)]  # in order, once each
    assert said[0] == (
        "cannot write /out/events.ndjson: No space left on device; reading paused, retrying in 1 s"
    )
    assert said[1].startswith("writing again after ") and len(said) == 2
    assert polled_in_outage and not any(polled_in_outage)  # nothing read while paused
    (checkpoint,) = store.load().values()
    assert checkpoint.offset == log.stat().st_size


def test_a_stop_in_an_outage_leaves_the_checkpoints_behind(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(n) for n in range(5)))
    store = CheckpointStore(tmp_path / "state", on_problem=print)
    clock, stop, said = StepClock(), threading.Event(), []
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning", clock=clock)
    stream = FlakyStream()
    stream.full = True
    pipeline_for(tail, stream, Steps(clock, stop, {3: lambda: None}), clock, said).run(stop)
    assert stream.data == b""
    assert [checkpoint.offset for checkpoint in store.load().values()] in ([], [0])
    assert said[-1] == (
        "cannot write /out/events.ndjson: No space left on device; stopping with the "
        "checkpoints behind what was not written (it is read again after a restart)"
    )


class FailingStore(CheckpointStore):
    """A state dir that refuses saves while ``read_only`` is set."""

    read_only = False

    def save(self, checkpoints: object) -> None:  # type: ignore[override]
        if self.read_only:
            raise OSError(errno.EROFS, "Read-only file system", str(self.temporary))
        super().save(checkpoints)  # type: ignore[arg-type]


def test_checkpoints_stay_behind_while_the_state_dir_is_read_only(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(n) for n in range(5)))
    store = FailingStore(tmp_path / "state", on_problem=print)
    store.read_only = True
    clock, stop, said = StepClock(), threading.Event(), []
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning", clock=clock)
    stream = FlakyStream()
    offsets: list[list[int]] = []

    def look() -> None:
        offsets.append([c.offset for c in CheckpointStore(store.state_dir).load().values()])

    def writable() -> None:
        store.read_only = False

    steps = Steps(clock, stop, {8: look, 9: writable, 20: look})
    pipeline_for(tail, stream, steps, clock, said).run(stop)
    assert offsets == [[], [log.stat().st_size]]
    assert said[0].startswith("cannot write ") and "Read-only file system" in said[0]
    assert said[1].startswith("writing again after ")
    assert len(said) == 2


# -- the Datadog sink's shutdown deadline ------------------------------------------------------


def slow_intake(sink: DatadogLogsSink, clock: StepClock, seconds: float) -> list[int]:
    """Every post takes ``seconds`` on ``clock`` and is accepted; the sizes posted."""
    posted: list[int] = []

    def post(body: bytes) -> tuple[int | None, float | None]:
        clock.now += seconds
        posted.append(len(orjson.loads(gzip.decompress(body))))
        return 202, None

    sink._post = post  # type: ignore[method-assign]
    return posted


def test_at_shutdown_no_post_starts_that_cannot_end_by_the_deadline(tmp_path: Path) -> None:
    clock, stop = StepClock(), threading.Event()
    sink = DatadogLogsSink(
        "http://127.0.0.1:9/api/v2/logs",
        "key",
        dead_letters=tmp_path / "dead.ndjson",
        stop=stop,
        warn=print,
        max_events=10,
        clock=clock,
        shutdown_timeout=10,
    )
    posted = slow_intake(sink, clock, 4)
    stop.set()
    deadline = time.monotonic() + 10
    while sink._deadline == math.inf:  # the deadline thread notes it: 10 s from now
        assert time.monotonic() < deadline
        time.sleep(0.001)
    delivered = sink.send(iter([({"n": n}, n) for n in range(35)]), "a", 35)
    with pytest.raises(Interrupted, match="15 events not delivered within the shutdown") as raised:
        sink.drain()
    # 4 s each: at 0 and 4 s a post fits in the 10 s, at 8 s it does not
    assert posted == [10, 10]
    delivered += raised.value.delivered  # acknowledged all the same
    assert delivered == [("a", n) for n in range(20)]
    sink.close()


def test_without_a_deadline_a_failure_at_shutdown_gives_up_at_once(tmp_path: Path) -> None:
    clock, stop = StepClock(), threading.Event()
    sink = DatadogLogsSink(
        "http://127.0.0.1:9/api/v2/logs",
        "key",
        dead_letters=tmp_path / "dead.ndjson",
        stop=stop,
        warn=print,
        clock=clock,
    )
    sink._post = lambda body: (503, None)  # type: ignore[method-assign]
    sink.send(iter([({"n": 1}, 1)]), "a", 1)
    stop.set()
    with pytest.raises(Interrupted, match="while the logs intake was failing"):
        sink.drain()
