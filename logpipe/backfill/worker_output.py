"""Worker processes of a local replay engine: how they start, how they end, and how they
append to the NDJSON output file in chunk order.

``OutputTurns`` is a counter and a condition shared by the main process and the workers: a chunk
is written when the counter reaches its turn. A worker writes its chunk itself if the turn has
come when it finishes (it never waits), else the main process writes it when it takes the
result, in order. Either way the file gets the chunks in order, and most events never travel
back to the main process.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Condition

from logpipe.sinks.write_behind import write_behind


class OutputTurns:
    """Whose turn it is to append to the NDJSON output file: chunks go in in order, written
    by the worker that parsed one when its turn has come (no waiting), or else by the main
    process when it takes the result in order."""

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


@dataclass(frozen=True)
class _WorkerOutput:
    fd: int
    turns: OutputTurns

    def write(self, block: bytes) -> None:
        view = memoryview(block)
        while view:
            view = view[os.write(self.fd, view) :]
        end = os.lseek(self.fd, 0, os.SEEK_CUR)  # (O_APPEND: just past this block)
        write_behind(self.fd, end - len(block), end)


_output: _WorkerOutput | None = None  # this worker process's output file, if it writes one
OutputFile = tuple[str, "Synchronized[int]", Condition]  # path, next turn, turn changed


def start_worker(parent: Connection, output: OutputFile | None) -> None:
    """Process-pool initializer. The main process decides when work stops (it finishes what is
    in flight, then ends the pool), so SIGINT and SIGTERM, which a terminal or systemd send to
    the whole group, are ignored here; and a worker leaves by itself once the main process is
    gone (``parent``, the read end of a pipe only it writes to, then reads end-of-file), so a
    killed replay leaves no workers behind. With ``output``, this worker appends its chunks'
    events to that file in turn."""
    global _output
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_leave_with, args=(parent,), name="watch-parent", daemon=True).start()
    if output is not None:
        path, next_turn, changed = output
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        _output = _WorkerOutput(fd, OutputTurns(next_turn, changed))


def _leave_with(parent: Connection) -> None:
    with suppress(EOFError, OSError):
        parent.recv_bytes()
    os._exit(1)


def append_in_turn(turn: int, block: bytes) -> bool:
    """In a writing worker: append ``block`` if ``turn`` has come (returns whether it did)."""
    output = _output
    return output is not None and output.turns.take(turn, lambda: output.write(block), wait=False)
