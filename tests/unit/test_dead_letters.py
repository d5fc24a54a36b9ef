"""The dead-letter file: appended under a lock, taken by a resend while writers go on, torn
tails cut (real files, real threads, real flock)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from logpipe.sinks.dead_letters import DEAD_LETTERS, RESENDING, append_dead_letters, take


def batch(first: int, count: int) -> bytes:
    return b"".join(b'{"message":"event %d"}\n' % number for number in range(first, first + count))


def numbers(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [int(line.split(b" ")[1].rstrip(b'"}')) for line in path.read_bytes().splitlines()]


def test_nothing_appended_is_lost_while_the_file_is_taken_again_and_again(
    tmp_path: Path,
) -> None:
    live = tmp_path / DEAD_LETTERS
    writers, per_writer, size = 3, 150, 7
    warnings: list[str] = []

    def write(writer: int) -> None:
        for number in range(per_writer):
            append_dead_letters(live, batch((writer * per_writer + number) * size, size), warn)

    def warn(message: str) -> None:
        warnings.append(message)

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    taken: list[int] = []
    rounds = 0
    while any(thread.is_alive() for thread in threads) or rounds == 0:
        target = tmp_path / f"{RESENDING}.{rounds}"
        if take(live, target, warn):
            taken += numbers(target)
        rounds += 1
    for thread in threads:
        thread.join()
    left = numbers(live)
    assert sorted(taken + left) == list(range(writers * per_writer * size))
    assert warnings == []  # no writer ever saw another's line half-written


def test_take_waits_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    live, taken = tmp_path / DEAD_LETTERS, tmp_path / RESENDING
    live.write_bytes(batch(0, 2))
    holder = os.open(live, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(holder, fcntl.LOCK_EX)
    thread = threading.Thread(target=take, args=(live, taken, print))
    thread.start()
    deadline = time.monotonic() + 10
    while not taken.exists():  # renamed; the take now waits for the writer's lock
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.write(holder, batch(2, 1))  # the writer that had the file open before the rename
    os.close(holder)
    thread.join(10)
    assert numbers(taken) == [0, 1, 2] and not live.exists()


def test_a_torn_last_line_is_cut_when_taken(tmp_path: Path) -> None:
    live, taken = tmp_path / DEAD_LETTERS, tmp_path / RESENDING
    live.write_bytes(batch(0, 3) + b'{"message":"eve')
    warnings: list[str] = []
    assert take(live, taken, warnings.append)
    assert numbers(taken) == [0, 1, 2]
    assert len(warnings) == 1 and "15 bytes of an event cut short" in warnings[0]
    assert not take(live, taken, warnings.append)  # nothing left to take
