"""Several processes appending to one NDJSON file in a set order: the capability a sink offers
with ``parallel_append_path`` (replay's worker processes use it to write their chunks' events
themselves, so that most events never travel back to the main process).

``OutputTurns`` is a counter and a condition shared by the main process and the workers
(``share``): a chunk is written when the counter reaches its turn. A worker writes its chunk
itself if the turn has come when it finishes (``append_in_turn``: it never waits), else the
main process hands the chunk to the sink when it takes the result, in order (``take``). Either
way the file gets the chunks in order.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from logpipe.sinks.append import AppendFile
from logpipe.sinks.write_behind import write_behind

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Condition

OutputFile = tuple[str, "Synchronized[int]", "Condition"]  # path, next turn, turn changed


class OutputTurns:
    """Whose turn it is to append to the file: chunks go in in order, written by the worker
    that parsed one when its turn has come (no waiting), or else by the main process when it
    takes the result in order."""

    def __init__(self, next_turn: Synchronized[int], changed: Condition) -> None:
        self._next = next_turn
        self._changed = changed
        self._numbers = itertools.count()  # main process: the turns given to chunks so far

    def number(self) -> int:
        """The next chunk's turn (in the main process, in the order the chunks are made)."""
        return next(self._numbers)

    def take(self, turn: int, write: Callable[[], object], *, wait: bool) -> bool:
        """Run ``write`` as ``turn`` and hand the turn on; without ``wait``, only if ``turn``
        is due now (returns whether it ran)."""
        with self._changed:
            if wait:
                self._changed.wait_for(lambda: self._next.value == turn)
            elif self._next.value != turn:
                return False
            write()
            self._next.value = turn + 1
            self._changed.notify_all()
        return True


def share(context: BaseContext, path: str) -> tuple[OutputTurns, OutputFile]:
    """Turns for appending to ``path`` from this process and from workers started in
    ``context``: this process's side, and what to start each worker with (``open_in_worker``)."""
    next_turn, changed = context.Value("q", 0, lock=False), context.Condition()
    return OutputTurns(next_turn, changed), (path, next_turn, changed)


@dataclass(frozen=True)
class _WorkerOutput:
    file: AppendFile
    turns: OutputTurns

    def write(self, block: bytes) -> None:
        """Append ``block`` whole, or nothing (``AppendFile``)."""
        self.file.write(block)
        fd = self.file.fileno()
        end = os.lseek(fd, 0, os.SEEK_CUR)  # (O_APPEND: just past this block)
        write_behind(fd, end - len(block), end)


_output: _WorkerOutput | None = None  # this worker process's output file, if it writes one


def open_in_worker(output: OutputFile) -> None:
    """In a worker process, at its start: append to ``output``'s file from now on, in turn."""
    global _output
    path, next_turn, changed = output
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    _output = _WorkerOutput(AppendFile(fd, path), OutputTurns(next_turn, changed))


def append_in_turn(turn: int, block: bytes) -> bool:
    """In a worker: append ``block`` if ``turn`` has come (returns whether it did; never
    without ``open_in_worker``)."""
    output = _output
    return output is not None and output.turns.take(turn, lambda: output.write(block), wait=False)
