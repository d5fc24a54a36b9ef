"""The Follower on real files, step by step, with a clock the test drives."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logpipe import AccessParser, ErrorParser
from logpipe.checkpoints import CheckpointStore, CorruptCheckpoints
from logpipe.pipeline.follow_loop import Checkpointing, FollowPipeline
from logpipe.sinks.ndjson import NdjsonSink
from logpipe.sources.follower import Follower, FollowSpec, Item, items


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(n: int) -> bytes:
    text = f'127.0.0.1 - - [25/Nov/2026:04:22:59 +0000] "GET /seq/{n} HTTP/1.1" 200 5 "-" "t"\n'
    return text.encode()


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def seqs(items: list[Item]) -> list[int]:
    return [int(item.data.split(b"/seq/")[1].split(b" ")[0]) for item in items]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def follower(
    tmp_path: Path, clock: Clock, *specs: FollowSpec, start_at: str = "beginning"
) -> Follower:
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    return Follower(specs, store, start_at=start_at, clock=clock, rotate_wait=5.0)


def drain(tail: Follower) -> list[Item]:
    read = items(tail.poll())
    for item in read:
        tail.ack(item.key, item.end)
    return read


def test_lines_partial_lines_and_checkpoint_resume(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    append(log, line(1) + line(2) + line(3)[:20])
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    assert seqs(drain(tail)) == [1, 2]
    append(log, line(3)[20:])
    assert seqs(drain(tail)) == [3]
    tail.checkpoint()
    append(log, line(4))
    tail.close()
    again = follower(tmp_path, clock, FollowSpec(str(log), "access"), start_at="end")
    assert seqs(drain(again)) == [4]


def test_start_at_end_skips_what_is_there(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    append(log, line(1) + line(2)[:10])
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"), start_at="end")
    assert drain(tail) == []
    append(log, line(2)[10:] + line(3))
    assert seqs(drain(tail)) == [2, 3]  # the line being written at start is not cut


def test_rename_rotation_drains_the_old_file_first(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    append(log, line(1))
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    assert seqs(drain(tail)) == [1]
    os.rename(log, tmp_path / "access.log.1")
    append(tmp_path / "access.log.1", line(2))  # a worker that has not reopened yet
    append(log, line(3))
    assert seqs(drain(tail)) == [2, 3]
    clock.now += 1
    append(tmp_path / "access.log.1", line(4))
    assert seqs(drain(tail)) == [4]
    clock.now += 6
    assert drain(tail) == []  # quiet long enough: the old file is closed
    append(tmp_path / "access.log.1", line(5))
    assert drain(tail) == []


def test_copytruncate_reads_the_missed_tail_from_the_copy(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    append(log, line(1))
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    assert seqs(drain(tail)) == [1]
    append(log, line(2) + line(3))  # written, not read yet
    (tmp_path / "access.log.1").write_bytes(log.read_bytes())
    os.truncate(log, 0)
    append(log, line(4))
    assert seqs(drain(tail)) == [2, 3, 4]


def test_truncation_without_a_copy_restarts_at_zero(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    append(log, line(1) + line(2))
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    assert seqs(drain(tail)) == [1, 2]
    os.truncate(log, 0)
    append(log, line(3) + line(4) + line(5))  # regrown past the old offset before the poll
    assert seqs(drain(tail)) == [3, 4, 5]


def test_delete_and_recreate(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    append(log, line(1))
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    assert seqs(drain(tail)) == [1]
    os.unlink(log)
    assert drain(tail) == []
    append(log, line(2))
    assert seqs(drain(tail)) == [2]


def test_symlink_swapped_to_a_new_target(tmp_path: Path, clock: Clock) -> None:
    first, second, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "access.log"
    append(first, line(1))
    append(second, line(2))
    link.symlink_to(first)
    tail = follower(tmp_path, clock, FollowSpec(str(link), "access"))
    assert seqs(drain(tail)) == [1]
    temporary = tmp_path / "link.tmp"
    temporary.symlink_to(second)
    os.replace(temporary, link)
    append(first, line(3))
    assert sorted(seqs(drain(tail))) == [2, 3]


def test_error_records_flush_after_quiet_and_at_rotation(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "error.log"
    append(
        log, b"[2026-11-25 04:22:59 +0000] [1] [ERROR] boom\nTraceback (most recent call last):\n"
    )
    tail = follower(tmp_path, clock, FollowSpec(str(log), "error"))
    assert drain(tail) == []  # pending: the record may go on
    clock.now += 1.5
    (record,) = drain(tail)
    assert record.data.endswith(b"Traceback (most recent call last):")
    append(log, b"[2026-11-25 04:23:00 +0000] [1] [INFO] old file\n")
    assert drain(tail) == []
    os.rename(log, tmp_path / "error.log.1")
    append(log, b"[2026-11-25 04:23:01 +0000] [1] [INFO] new file\n")
    append(log, b"[2026-11-25 04:23:02 +0000] [1] [INFO] newer\n")
    read = drain(tail)  # at the rotation: the old file's pending record first
    assert [item.data.split(b"] ")[-1] for item in read] == [b"old file", b"new file"]
    clock.now += 6
    read = drain(tail) + items(tail.close())
    assert [item.data.split(b"] ")[-1] for item in read] == [b"newer"]


def test_checkpoints_never_pass_a_pending_record(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "error.log"
    first = b"[2026-11-25 04:22:59 +0000] [1] [INFO] one\n"
    append(log, first + b"[2026-11-25 04:23:00 +0000] [1] [INFO] two\n")
    tail = follower(tmp_path, clock, FollowSpec(str(log), "error"))
    drain(tail)
    tail.checkpoint()
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    (checkpoint,) = store.load().values()
    assert checkpoint.offset == len(first)


def test_missing_file_is_followed_once_it_appears(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"), start_at="end")
    assert drain(tail) == []
    append(log, line(1))
    assert seqs(drain(tail)) == [1]  # appeared after start: read from the beginning


def test_files_beyond_the_open_limit_are_parked_and_read_in_turn(
    tmp_path: Path, clock: Clock
) -> None:
    paths = [tmp_path / f"app-{n}.log" for n in range(10)]
    for n, path in enumerate(paths):
        append(path, line(n))
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    specs = [FollowSpec(str(path), "access") for path in paths]
    tail = Follower(specs, store, start_at="beginning", clock=clock, max_open=3)
    seen: list[int] = []
    for _ in range(10):
        seen += seqs(drain(tail))
        clock.now += 0.25
    assert sorted(seen) == list(range(10))
    os.rename(paths[0], tmp_path / "app-0.log.1")  # renamed while parked
    append(tmp_path / "app-0.log.1", line(100))
    append(paths[0], line(200))
    for n, path in enumerate(paths[1:], 1):
        append(path, line(10 + n))
    for _ in range(20):
        seen += seqs(drain(tail))
        clock.now += 0.25
    assert sorted(seen) == [*range(10), *range(11, 20), 100, 200]


class CountingSink(NdjsonSink):
    """An NDJSON sink that counts its sync jobs."""

    durable = 0

    def sync_job(self) -> Callable[[], None]:
        self.durable += 1
        return super().sync_job()


@pytest.mark.integration
def test_an_idle_follower_syncs_its_output_once(tmp_path: Path) -> None:
    """Checkpoints come every second; the output is synced only when something new went out."""
    log, out = tmp_path / "access.log", tmp_path / "events.ndjson"
    append(log, line(1) + line(2))
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning")
    with open(out, "ab") as stream:
        sink = CountingSink(stream, fsync=True, path=str(out))
        pipeline = FollowPipeline(
            tail, sink, access=AccessParser(), errors=ErrorParser(), exit_idle=2.6
        )
        pipeline.run(threading.Event())  # about two idle checkpoints, then the drain's
    assert out.read_bytes().count(b"\n") == 2
    assert sink.durable == 1
    (checkpoint,) = store.load().values()
    assert checkpoint.offset == len(line(1) + line(2))


def test_checkpoints_are_stored_off_the_loop_after_their_sync() -> None:
    """The loop goes on while a checkpoint waits on the disk; the offsets are stored only after
    the output's sync, and a failure reaches the loop at its next look."""
    checkpointing = Checkpointing()
    release, done = threading.Event(), []
    loop_thread = threading.get_ident()

    def sync() -> None:
        release.wait(10)
        done.append(("sync", threading.get_ident() != loop_thread))

    checkpointing.run(sync, lambda: done.append(("store", True)))
    assert not checkpointing.idle()  # the sync still waits: the loop is free
    release.set()
    deadline = time.monotonic() + 10
    while not checkpointing.idle():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert done == [("sync", True), ("store", True)]

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    checkpointing.run(full_disk, lambda: done.append(("store", False)))
    with pytest.raises(OSError, match="No space"):
        checkpointing.finish()  # waits, and raises what the checkpoint raised
    assert done[-1] == ("store", True)  # nothing stored behind a failed sync


def test_a_failed_checkpoint_is_raised_at_the_next_look() -> None:
    checkpointing = Checkpointing()

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    checkpointing.run(full_disk, lambda: None)
    deadline = time.monotonic() + 10
    with pytest.raises(OSError, match="No space"):
        while not checkpointing.idle():
            assert time.monotonic() < deadline
            time.sleep(0.01)
    checkpointing.finish()
    stored: list[bool] = []
    checkpointing.run(
        None, lambda: stored.append(threading.current_thread() is threading.main_thread())
    )
    assert stored == [True]  # after finish: on the caller's thread, at once


def test_a_checkpoint_job_comes_only_when_the_offsets_moved(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, line(1))
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning")
    (item,) = drain(tail)
    tail.ack(item.key, item.end)
    job = tail.checkpoint_job()
    assert job is not None
    assert tail.checkpoint_job() is not None  # not stored yet: asked again, a job again
    job()
    assert tail.checkpoint_job() is None  # stored, nothing moved since: an idle follower rests
    append(log, line(2))
    (item,) = drain(tail)
    tail.ack(item.key, item.end)
    assert tail.checkpoint_job() is not None


class RecordingWaker:
    """Stands in for the file-notification waker: records each wait, stops after ``waits``."""

    def __init__(self, stop: threading.Event, waits: int, then: Callable[[], None]) -> None:
        self.timeouts: list[float] = []
        self._stop, self._waits, self._then = stop, waits, then

    def wait(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        if len(self.timeouts) == self._waits:
            self._then()
        if len(self.timeouts) == 2 * self._waits:
            self._stop.set()


def test_an_idle_follower_polls_less_often_and_catches_up_at_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, line(1))
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning")
    stop = threading.Event()
    waker = RecordingWaker(stop, 4, lambda: append(log, line(2)))
    with open(os.devnull, "wb") as null:
        pipeline = FollowPipeline(
            tail,
            NdjsonSink(null, fsync=False),
            access=AccessParser(),
            errors=ErrorParser(),
            waker=waker,  # type: ignore[arg-type]
        )
        pipeline.run(stop)
    # after a poll with lines: 0.25 s; each empty poll doubles it, up to a second
    assert waker.timeouts == [0.25, 0.5, 1.0, 1.0, 0.25, 0.5, 1.0, 1.0]
    assert pipeline.lines == 2


class CongestedSink(NdjsonSink):
    """An NDJSON sink that says it is congested until told otherwise."""

    congested = True  # type: ignore[assignment]


@pytest.mark.integration  # a real loop, idle for 1.5 s before it exits
def test_logs_stay_paused_in_one_line_when_the_checkpoints_cannot_be_read_again(
    tmp_path: Path,
) -> None:
    """Resuming after a logs pause makes the follower again from its checkpoints; when they
    cannot be read then, that is one line, the logs stay paused and the loop goes on."""
    log, out = tmp_path / "access.log", tmp_path / "events.ndjson"
    append(log, line(1) + line(2))
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="beginning")
    said: list[str] = []

    def refollow() -> Follower:
        raise CorruptCheckpoints("no usable checkpoints in state: damaged")

    with open(out, "wb") as output:
        sink = CongestedSink(output, fsync=False)
        pipeline = FollowPipeline(
            tail,
            sink,
            access=AccessParser(),
            errors=ErrorParser(),
            observers=[lambda event: None],
            exit_idle=1.5,
            report=said.append,
            refollow=refollow,
        )
        pipeline.run(threading.Event())
    assert out.read_bytes() == b""  # paused: nothing sent, the file keeps the logs
    assert pipeline.logs_paused
    failures = [line for line in said if "cannot read the checkpoints" in line]
    assert failures == [  # said once, though tried at each loop
        "logs stay paused: cannot read the checkpoints again: no usable checkpoints in state: "
        "damaged"
    ]
