"""What the follower follows: wildcards, odd files at a followed path, unterminated lines, and
renamed files read after the rename."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

from logpipe.checkpoints import CheckpointStore
from logpipe.sources.follower import Follower, FollowSpec
from tests.unit.test_follow import Clock, append, clock, drain, line, seqs
from tests.unit.test_follow_restarts import Recorder

__all__ = ["clock"]  # the fixture, shared


def follower(tmp_path: Path, clock: Clock, *specs: FollowSpec, **options: object) -> Follower:
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    return Follower(specs, store, start_at="beginning", clock=clock, rotate_wait=5.0, **options)  # type: ignore[arg-type]


def test_a_wildcard_follows_files_that_appear_later_from_their_start(
    tmp_path: Path, clock: Clock
) -> None:
    notices: list[str] = []
    tail = follower(tmp_path, clock, FollowSpec(str(tmp_path / "*access.log"), "access"),
                    observer=Recorder(notices), exclude=["skip-*"])  # fmt: skip
    assert drain(tail) == []
    assert notices == ["no-match *access.log {}"]  # said once
    assert drain(tail) == []
    append(tmp_path / "a-access.log", line(1))
    append(tmp_path / "skip-access.log", line(99))
    assert seqs(drain(tail)) == [1]
    append(tmp_path / "b-access.log", line(2) + line(3))
    append(tmp_path / "a-access.log", line(4))
    assert sorted(seqs(drain(tail))) == [2, 3, 4]


def test_a_file_matched_under_two_names_has_one_reader(tmp_path: Path, clock: Clock) -> None:
    """``access.log*`` also matches the rotated name: the renamed file is read once."""
    log = tmp_path / "access.log"
    append(log, line(1))
    tail = follower(tmp_path, clock, FollowSpec(str(tmp_path / "access.log*"), "access"))
    assert seqs(drain(tail)) == [1]
    os.rename(log, tmp_path / "access.log.1")
    append(tmp_path / "access.log.1", line(2))
    append(log, line(3))
    assert sorted(seqs(drain(tail))) == [2, 3]
    clock.now += 6  # the renamed file's reader retires; its name is a match of its own now
    assert drain(tail) == []
    append(tmp_path / "access.log.1", line(4))
    assert seqs(drain(tail)) == [4]
    assert drain(tail) == []


def test_odd_files_are_refused_without_opening_and_said_once(tmp_path: Path, clock: Clock) -> None:
    fifo, directory, good = tmp_path / "fifo.log", tmp_path / "dir.log", tmp_path / "good.log"
    os.mkfifo(fifo)
    directory.mkdir()
    append(good, line(1))
    notices: list[str] = []
    specs = [FollowSpec(str(path), "access") for path in (fifo, directory, good)]
    tail = follower(tmp_path, clock, *specs, observer=Recorder(notices))
    assert seqs(drain(tail)) == [1]
    assert seqs(drain(tail)) == []
    refused = [notice for notice in notices if notice.startswith("unreadable")]
    assert refused == [
        "unreadable fifo.log {'reason': 'is a FIFO, not a regular file'}",
        "unreadable dir.log {'reason': 'is a directory, not a regular file'}",
    ]
    assert tail.problems == 2
    directory.rmdir()
    append(directory, line(2))  # a file at last: followed, from its start (it appeared later)
    assert seqs(drain(tail)) == [2]
    assert notices[-2:] == ["readable dir.log {}", "opened dir.log {'offset': 0}"]
    assert tail.problems == 1


def test_an_unreadable_file_is_said_once_then_followed_when_readable(
    tmp_path: Path, clock: Clock
) -> None:
    log = tmp_path / "access.log"
    append(log, line(1))
    notices: list[str] = []
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"), observer=Recorder(notices))
    refuse = mock.patch("os.open", side_effect=PermissionError(13, "Permission denied"))
    with refuse:  # (CI runs as root, whom chmod does not stop)
        assert drain(tail) == []
        assert drain(tail) == []
    assert notices == ["unreadable access.log {'reason': 'Permission denied'}"]
    assert seqs(drain(tail)) == [1]
    assert tail.problems == 0


def test_an_unterminated_line_is_not_read_again_until_the_file_grows(
    tmp_path: Path, clock: Clock
) -> None:
    log = tmp_path / "access.log"
    append(log, line(1) + line(2)[:30])
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    assert seqs(drain(tail)) == [1]
    with mock.patch("logpipe.sources.follower.read_batches") as read:
        assert drain(tail) == []
        assert drain(tail) == []
    assert read.call_count == 0
    append(log, line(2)[30:])
    assert seqs(drain(tail)) == [2]


def test_a_renamed_file_is_read_until_quiet_after_the_rename(tmp_path: Path, clock: Clock) -> None:
    """Quiet for long before the rename, written to 0.5 s after it: not lost."""
    log = tmp_path / "error.log"
    append(log, line(1))
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    assert seqs(drain(tail)) == [1]
    clock.now += 60  # quiet for a minute
    os.rename(log, tmp_path / "error.log.1")
    append(log, line(3))
    assert seqs(drain(tail)) == [3]
    clock.now += 0.5
    append(tmp_path / "error.log.1", line(2))  # e.g. "Handling signal: usr1"
    assert seqs(drain(tail)) == [2]


def test_an_empty_file_is_known_from_its_open(tmp_path: Path, clock: Clock) -> None:
    """A checkpoint names an empty file at once: after a crash, what was written to it
    meanwhile is read from its start, even where new files start at their end."""
    log = tmp_path / "access.log"
    log.touch()
    store = CheckpointStore(tmp_path / "state", on_problem=lambda message: None)
    tail = Follower([FollowSpec(str(log), "access")], store, start_at="end", clock=clock)
    assert drain(tail) == []
    assert tail.unsaved_files
    tail.checkpoint()  # what the follow loop does at once when a file was opened
    append(log, line(1) + line(2))  # then a crash: nothing read, nothing stored
    again = Follower([FollowSpec(str(log), "access")], store, start_at="end", clock=clock)
    assert seqs(drain(again)) == [1, 2]


def bytes_read_by_this_process() -> int:
    with open("/proc/self/io") as io:
        return next(int(row.split()[1]) for row in io if row.startswith("rchar:"))


def test_a_growing_unterminated_line_is_read_once(tmp_path: Path, clock: Clock) -> None:
    """Each poll reads what was added, not the whole line again; once ended, the line is one
    capped event."""
    log = tmp_path / "access.log"
    append(log, line(1))
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"), max_line_bytes=4096)
    assert seqs(drain(tail)) == [1]
    for _ in range(8):
        append(log, b"x" * (1 << 20))  # a line that goes on and on
        before = bytes_read_by_this_process()
        assert drain(tail) == []
        assert bytes_read_by_this_process() - before < (1 << 20) + 65536
    append(log, b"\n" + line(2))
    long, last = drain(tail)
    assert long.truncated and long.data == b"x" * 4096
    assert long.end == len(line(1)) + 8 * (1 << 20) + 1
    assert seqs([last]) == [2]
