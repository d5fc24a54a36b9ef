"""Restart reconciliation: files rotated while logpipe was stopped are found beside their path
and read from their checkpoint; files created and rotated meanwhile are read whole."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from logpipe.sources.follower import FollowSpec, Item
from logpipe.sources.rotated import siblings
from tests.unit.test_follow import Clock, append, clock, drain, follower, line, seqs

__all__ = ["clock"]  # the fixture, shared


def lines(numbers: range) -> bytes:
    return b"".join(line(n) for n in numbers)


def first_run(tmp_path: Path, clock: Clock, log: Path) -> None:
    """600 lines delivered and checkpointed, then a clean stop."""
    append(log, lines(range(600)))
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"))
    while drain(tail):
        pass
    tail.close()
    tail.checkpoint()


def restart(tmp_path: Path, clock: Clock, log: Path, notices: list[str]) -> list[Item]:
    """Start again (``start_at`` end, as by default) and read until nothing more comes."""
    tail = follower(tmp_path, clock, FollowSpec(str(log), "access"), start_at="end")
    tail._observer = Recorder(notices)  # type: ignore[assignment]
    read: list[Item] = []
    while batch := drain(tail):
        read += batch
    return read


class Recorder:
    def __init__(self, notices: list[str]) -> None:
        self.notices = notices

    def notice(self, event: str, path: str, **details: int | str) -> None:
        self.notices.append(f"{event} {os.path.basename(path)} {details}")


def gzip_file(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    with open(path, "rb") as source, gzip.open(target, "wb") as archive:
        shutil.copyfileobj(source, archive)
    path.unlink()
    return target


@pytest.mark.parametrize("kind", ["rename", "copytruncate", "rename+gzip"])
def test_rotation_while_stopped_loses_nothing(tmp_path: Path, clock: Clock, kind: str) -> None:
    log = tmp_path / "access.log"
    first_run(tmp_path, clock, log)
    append(log, lines(range(600, 900)))  # written while logpipe was stopped
    rotated = tmp_path / "access.log.1"
    if kind == "copytruncate":
        shutil.copyfile(log, rotated)
        os.truncate(log, 0)
    else:
        os.rename(log, rotated)
        if kind == "rename+gzip":
            gzip_file(rotated)
    append(log, lines(range(900, 1100)))
    notices: list[str] = []
    assert seqs(restart(tmp_path, clock, log, notices)) == list(range(600, 1100))
    assert any(notice.startswith("recovering access.log") for notice in notices), notices


def test_two_rotations_while_stopped(tmp_path: Path, clock: Clock) -> None:
    """The file created and rotated away during the downtime is read whole, after the rest of
    the one logpipe knew."""
    log = tmp_path / "access.log"
    first_run(tmp_path, clock, log)
    append(log, lines(range(600, 900)))
    os.rename(log, tmp_path / "access.log.1")
    append(log, lines(range(900, 1000)))
    os.rename(tmp_path / "access.log.1", tmp_path / "access.log.2")
    gzip_file(tmp_path / "access.log.2")  # compress, without delaycompress
    os.rename(log, tmp_path / "access.log.1")
    append(log, lines(range(1000, 1100)))
    notices: list[str] = []
    assert seqs(restart(tmp_path, clock, log, notices)) == list(range(600, 1100))


def test_dated_rotations_while_stopped(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    first_run(tmp_path, clock, log)
    append(log, lines(range(600, 900)))
    os.rename(log, tmp_path / "access.log-20261201")
    append(log, lines(range(900, 1000)))
    os.rename(log, tmp_path / "access.log-20261202")
    append(log, lines(range(1000, 1100)))
    assert seqs(restart(tmp_path, clock, log, [])) == list(range(600, 1100))


def test_history_is_not_read_again(tmp_path: Path, clock: Clock) -> None:
    """Older rotated files, read before, and a restart with nothing rotated: nothing again."""
    log = tmp_path / "access.log"
    append(tmp_path / "access.log.3", lines(range(5)))  # before logpipe's time
    first_run(tmp_path, clock, log)
    assert restart(tmp_path, clock, log, []) == []
    append(log, lines(range(600, 610)))
    assert seqs(restart(tmp_path, clock, log, [])) == list(range(600, 610))


def test_a_checkpoint_past_the_end_is_a_truncation(tmp_path: Path, clock: Clock) -> None:
    log = tmp_path / "access.log"
    first_run(tmp_path, clock, log)
    with open(log, "r+b") as file:  # the same inode and head, shorter than the checkpoint
        file.truncate(0)
        file.write(lines(range(20)))
    notices: list[str] = []
    assert seqs(restart(tmp_path, clock, log, notices)) == list(range(20))
    assert any(notice.startswith("truncated") for notice in notices), notices


def test_siblings_oldest_first(tmp_path: Path) -> None:
    for name in ["access.log", "access.log.1", "access.log.2.gz", "access.log.10", "other.log.1",
                 "access.log.bak", "access.log-20261201", "access.log-20261130.gz"]:  # fmt: skip
        (tmp_path / name).touch()
    names = [os.path.basename(sibling.path) for sibling in siblings(str(tmp_path / "access.log"))]
    assert names == [
        "access.log-20261130.gz",
        "access.log-20261201",
        "access.log.10",
        "access.log.2.gz",
        "access.log.1",
    ]
